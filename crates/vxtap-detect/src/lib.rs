//! Attack detection for vxtap: a pure function from a reconstructed HTTP request to findings.
//!
//! The detector sees every request, whether rebuilt from packets or received as an HTTP mirror copy,
//! and reports each matched rule as a [`Finding`], which the engine writes as an EVE `alert` event.
//!
//! How a request is inspected:
//! 1. **Extraction** ([`extract`]): the values applications read are found and named: `path`,
//!    `args.NAME` (query), `form.NAME` (urlencoded body), `json.a.b[0]` (nested JSON, keys too as
//!    `json_keys.…`), `multipart.NAME` and `multipart.NAME.filename`, `xml` and `xml.TAG`,
//!    `cookies.NAME`, `headers.NAME`, `body`, and the raw `uri`.
//! 2. **Normalisation** ([`normalize`]): repeated URL decoding (`+`, `%u`), HTML entities, JS escapes,
//!    overlong UTF-8, Unicode look-alikes, NUL removal, lower case; rules can also ask for an SQL view
//!    (comments and whitespace tricks removed) or a path view (`\`, `//`, `/./`, `..;/`).
//! 3. **Matching**: an Aho-Corasick automaton over the prefilter literals of the rules that look at a
//!    kind of value (kinds with large literal sets share one) picks the few rules worth running on a
//!    value; those run their linear-time regex (`regex` crate: no backtracking, no ReDoS; skipped
//!    when the value lacks bytes every match needs) or their code check (libinjection's SQL / HTML
//!    tokenisers, the SSRF address classifier). Request-level rules check framing (CL+TE, duplicate
//!    CL, folded lines, bad header names).
//! 4. **Findings**: one per matched rule per request, naming the locations and the matched fragment.
//!
//! The rules are data: `configs/rules.toml`, compiled into the binary as the built-in set
//! ([`Detector::builtin`]) and loadable from a file ([`Detector::from_rules_file`]). All work per
//! request is bounded by [`Limits`].
//!
//! ```
//! use vxtap_detect::Detector;
//! use vxtap_http::{Header, Request};
//!
//! let detector = Detector::builtin();
//! let request = Request {
//!     method: b"GET".to_vec(),
//!     target: b"/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--".to_vec(),
//!     protocol: b"HTTP/1.1".to_vec(),
//!     headers: vec![Header { name: b"Host".to_vec(), value: b"shop.example".to_vec() }],
//!     ..Request::default()
//! };
//! let findings = detector.inspect(&request);
//! assert!(findings.iter().any(|f| f.attack_class.contains(&"sqli".to_string())));
//! assert!(findings.iter().all(|f| f.location.contains(&"args.q".to_string())));
//!
//! let benign = Request { target: b"/search?q=O%27Brien+%26+sons".to_vec(), ..request };
//! assert!(detector.inspect(&benign).is_empty());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builtin;
pub mod extract;
mod literals;
pub mod normalize;
mod required;
mod rules;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use vxtap_http::Request;

pub use extract::Kind;
pub use rules::{CLASSES, RulesError};

use literals::Literals;
use required::Profile;
use rules::{Compile, Engine, Rule, View};

/// The built-in rule set: `configs/rules.toml` as compiled into the crate.
pub const BUILTIN_RULES: &str = include_str!("../../../configs/rules.toml");

/// One rule matched by one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule's signature id.
    pub signature_id: u32,
    /// The rule's revision.
    pub rev: u32,
    /// Human-readable rule name.
    pub signature: String,
    /// Suricata-style category text.
    pub category: String,
    /// 1 (high) to 3 (low).
    pub severity: u8,
    /// Attack classes, e.g. `sqli`.
    pub attack_class: Vec<String>,
    /// Where the match was found, e.g. `args.q`, `headers.user-agent` (at most
    /// [`Limits::max_locations`], in request order).
    pub location: Vec<String>,
    /// The normalised fragment that matched (at most 120 characters), from the first location.
    pub fragment: String,
}

/// What the detector made of one request ([`Detector::examine`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Every rule the request matches, as [`Detector::inspect`] returns them.
    pub findings: Vec<Finding>,
    /// True when a bound of [`Limits`] left part of the request unread or unscanned: the number of
    /// values, their total bytes or the scan budget ran out (not a body or value longer than its own
    /// bound, which is how deep inspection goes by design). Findings may be missing.
    pub partial: bool,
}

/// Bounds on the work done for one request. Values past a bound are not inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Body bytes looked at (from the start). Default 64 KiB.
    pub max_body_bytes: usize,
    /// Bytes of one value inspected (from its start). Default 4 KiB.
    pub max_value_bytes: usize,
    /// Values (arguments, headers, JSON strings, parts, runs of text in binary content, …) inspected
    /// per request. Default 192.
    pub max_values: usize,
    /// Total value bytes inspected per request. Default 64 KiB.
    pub max_total_bytes: usize,
    /// JSON nesting depth followed for location names; deeper values are still inspected. Default 32.
    pub max_json_depth: usize,
    /// Locations listed per finding. Default 8.
    pub max_locations: usize,
    /// Bytes that rule engines (regexes, tokenisers) may scan for one request, summed over every rule
    /// run on every value; past it the request's remaining values are skipped. This is what bounds the
    /// time of a hostile request that puts every rule's prefilter literal into every value.
    /// Default 384 KiB.
    pub max_scan_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 << 10,
            max_value_bytes: 4 << 10,
            max_values: 192,
            max_total_bytes: 64 << 10,
            max_json_depth: 32,
            max_locations: 8,
            max_scan_bytes: 384 << 10,
        }
    }
}

/// The prefilter of one kind of value: an automaton over (at least) the literals of the rules that
/// target it.
struct KindFilter {
    /// Index into [`Inner::automata`].
    automaton: usize,
    /// Pattern id → rule indices of this kind (empty for a literal only other kinds use).
    literal_rules: Vec<Vec<u16>>,
    /// Pattern id → the views ([`View::bit`]) of this kind's rules that a value holding the literal
    /// may differ in ([`View::triggers`]): those views are walked too.
    literal_views: Vec<u8>,
    /// Rules without literals that target this kind, run on every such value.
    always: Vec<u16>,
}

struct Inner {
    rules: Vec<Rule>,
    /// The prefilter automata; kinds with large literal sets share one.
    automata: Vec<Literals>,
    /// One prefilter per [`Kind`], indexed by `Kind as usize`.
    filters: Vec<KindFilter>,
    /// Request-level (protocol) rules.
    request_rules: Vec<u16>,
}

/// A loaded rule set. Cloning is cheap (the set is shared), and [`Detector::builtin`] loads the
/// built-in set once per process, so each worker thread can take its own handle.
///
/// Each handle remembers the short values on which no rule matched, so a
/// worker that owns its handle inspects a repeated header or argument once.
pub struct Detector {
    inner: Arc<Inner>,
    limits: Limits,
    memo: Mutex<Memo>,
}

impl Clone for Detector {
    fn clone(&self) -> Self {
        Detector::of(Arc::clone(&self.inner)).with_limits(self.limits)
    }
}

/// Values up to this many bytes are remembered when no rule matched them.
const MEMO_MAX_VALUE: usize = 256;
/// Values remembered per handle; the memo starts afresh when full (about 1.5 MiB at most).
const MEMO_ENTRIES: usize = 4096;

/// What the rules made of one value: the rules run and the budget they were charged.
struct Outcome {
    /// Scan-budget charge: rules run × [`scan_cost`].
    charge: usize,
    /// Rules that matched, with their fragments, in the order they ran.
    matches: Vec<(u16, String)>,
}

/// Short values on which no rule matched, with their scan-budget charge, keyed by kind, header name
/// (lower case) and raw bytes. What the rules make of a value depends on nothing else, so a value seen
/// again is charged the same and skipped instead of being normalised and matched again.
#[derive(Default)]
struct Memo {
    /// foldhash, randomly seeded per map: SipHash of every short value showed in the profile.
    charges: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    /// The key being looked up.
    key: Vec<u8>,
}

impl Memo {
    /// Builds the key of `v` in [`Memo::key`]; false when the value is too long to be remembered.
    fn set_key(&mut self, v: &extract::Value) -> bool {
        let header = matches!(v.kind, Kind::Header | Kind::StdHeader);
        if v.raw.len() > MEMO_MAX_VALUE || (header && v.name.len() > usize::from(u8::MAX)) {
            return false;
        }
        self.key.clear();
        self.key.push(v.kind as u8);
        if header {
            self.key.push(v.name.len() as u8);
            self.key.extend(v.name.iter().map(u8::to_ascii_lowercase));
        }
        self.key.extend_from_slice(&v.raw);
        true
    }

    fn get(&self) -> Option<usize> {
        self.charges.get(self.key.as_slice()).copied()
    }

    fn put(&mut self, charge: usize) {
        if self.charges.len() >= MEMO_ENTRIES {
            self.charges.clear();
        }
        if self.charges.capacity() == 0 {
            self.charges.reserve(MEMO_ENTRIES);
        }
        self.charges.insert(self.key.as_slice().into(), charge);
    }
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("rules", &self.inner.rules.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for Detector {
    fn default() -> Self {
        Detector::builtin()
    }
}

/// A value with its lazily computed views; a view computed as `None` is the value itself.
struct Prepared {
    norm: String,
    /// Each derived view, indexed by `View as usize`, once a rule asked for it (`Some(None)`: the
    /// view is the same text as `norm`). The `Norm` slot stays empty: that view is `norm` itself.
    views: [Option<Option<String>>; View::COUNT],
    /// What rules' requirements know of each view, indexed by `View as usize`, once a rule has asked.
    profiles: [Option<Profile>; View::COUNT],
}

impl Prepared {
    fn new(norm: String) -> Prepared {
        Prepared { norm, views: Default::default(), profiles: Default::default() }
    }

    fn view(&mut self, v: View) -> &str {
        let Some(derive) = v.derivation() else { return &self.norm };
        self.views[v as usize].get_or_insert_with(|| derive(&self.norm)).as_deref().unwrap_or(&self.norm)
    }

    /// View `v` when it differs from the value.
    fn derived(&mut self, v: View) -> Option<&str> {
        self.view(v);
        self.views[v as usize].as_ref().and_then(Option::as_deref).filter(|text| *text != self.norm)
    }

    /// View `v` with its profile (shared with the value's when the view is the value itself).
    fn profile(&mut self, v: View) -> (&mut Profile, &str) {
        self.view(v);
        let (slot, text) = match self.views[v as usize].as_ref().and_then(Option::as_deref) {
            Some(text) => (v as usize, text),
            None => (View::Norm as usize, self.norm.as_str()),
        };
        (self.profiles[slot].get_or_insert_with(|| Profile::of(text.as_bytes())), text)
    }
}

impl Detector {
    /// The built-in rule set (`configs/rules.toml`, loaded once per process and shared; each pattern
    /// is compiled when a value first reaches its rule).
    pub fn builtin() -> Detector {
        static BUILTIN: OnceLock<Arc<Inner>> = OnceLock::new();
        let inner = BUILTIN.get_or_init(|| {
            let rules = rules::compile(BUILTIN_RULES, "configs/rules.toml (built in)", Compile::OnFirstUse)
                .unwrap_or_else(|e| panic!("built-in rules are invalid: {e}"));
            Arc::new(Inner::new(rules))
        });
        Detector::of(Arc::clone(inner))
    }

    /// Loads a rule set from a TOML file in the format of `configs/rules.toml`.
    pub fn from_rules_file(path: impl AsRef<Path>) -> Result<Detector, RulesError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| RulesError::Io { path: path.to_path_buf(), source })?;
        Self::from_rules_str(&text, &path.display().to_string())
    }

    /// Loads a rule set from TOML text; `origin` names it in error messages.
    pub fn from_rules_str(text: &str, origin: &str) -> Result<Detector, RulesError> {
        let rules = rules::compile(text, origin, Compile::AtLoad)?;
        Ok(Detector::of(Arc::new(Inner::new(rules))))
    }

    /// A handle on a compiled set, with the default limits and an empty memo.
    fn of(inner: Arc<Inner>) -> Detector {
        Detector { inner, limits: Limits::default(), memo: Mutex::default() }
    }

    /// The same rules with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Detector {
        self.limits = limits;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Number of rules loaded.
    pub fn rule_count(&self) -> usize {
        self.inner.rules.len()
    }

    /// Every rule the request matches, one [`Finding`] per rule, ordered by signature id.
    pub fn inspect(&self, request: &Request) -> Vec<Finding> {
        self.examine(request).findings
    }

    /// [`Detector::inspect`], and whether a bound of [`Limits`] left part of the request out.
    pub fn examine(&self, request: &Request) -> Inspection {
        let inner = &*self.inner;
        let mut found: Vec<(u16, Finding)> = Vec::new();
        let max_loc = self.limits.max_locations.max(1);
        let mut add = |ri: u16, loc: String, fragment: &str| {
            if let Some((_, f)) = found.iter_mut().find(|(r, _)| *r == ri) {
                if f.location.len() < max_loc && !f.location.contains(&loc) {
                    f.location.push(loc);
                }
                return;
            }
            let r = &inner.rules[ri as usize];
            found.push((
                ri,
                Finding {
                    signature_id: r.id,
                    rev: r.rev,
                    signature: r.name.clone(),
                    category: r.category.clone(),
                    severity: r.severity,
                    attack_class: r.classes.clone(),
                    location: vec![loc],
                    fragment: fragment.to_string(),
                },
            ));
        };

        for &ri in &inner.request_rules {
            if let Engine::Protocol(check) = &inner.rules[ri as usize].engine
                && let Some((loc, frag)) = check.run(request)
            {
                add(ri, loc, &frag);
            }
        }

        let (values, mut partial) = extract::collect(request, &self.limits);
        let mut memo = self.memo.try_lock().ok();
        let mut scratch = Scratch {
            candidates: Vec::with_capacity(16),
            seen: vec![false; inner.rules.len()],
            later: literals::Scratch::default(),
        };
        let mut scan_budget = self.limits.max_scan_bytes;
        for v in &values {
            let memo = memo.as_deref_mut().and_then(|m| m.set_key(v).then_some(m));
            if let Some(charge) = memo.as_deref().and_then(Memo::get)
                && charge <= scan_budget
            {
                scan_budget -= charge;
                continue;
            }
            match self.evaluate(v, scan_budget, &mut scratch) {
                Ok(outcome) => {
                    scan_budget -= outcome.charge;
                    for (ri, frag) in &outcome.matches {
                        add(*ri, v.loc(), frag);
                    }
                    if let Some(m) = memo
                        && outcome.matches.is_empty()
                    {
                        m.put(outcome.charge);
                    }
                }
                Err(mut prep) => {
                    // the budget runs out inside this value: its rules run in order until then
                    self.run_until_exhausted(v, &mut prep, scan_budget, &scratch.candidates, &mut add);
                    partial = true;
                    break;
                }
            }
        }
        let mut findings: Vec<Finding> = found.into_iter().map(|(_, f)| f).collect();
        findings.sort_by_key(|f| f.signature_id);
        Inspection { findings, partial }
    }
}

impl Detector {
    /// Normalises one value and runs the rules its prefilter picks. `Err` (with the normalised value,
    /// the rules to run left in `scratch.candidates`) when running them all would cost more than
    /// `budget`.
    fn evaluate(
        &self,
        v: &extract::Value,
        budget: usize,
        scratch: &mut Scratch,
    ) -> Result<Outcome, Box<Prepared>> {
        scratch.candidates.clear();
        // binary content is not text: only special checks target it, and they read its raw bytes
        let norm = match v.kind {
            Kind::Binary => String::new(),
            _ => normalize::normalize(&v.raw, v.kind.plus_is_space()).0,
        };
        let Some(cost) = scan_cost(v, &norm) else {
            return Ok(Outcome { charge: 0, matches: Vec::new() });
        };
        let mut prep = Prepared::new(norm);
        self.inner.candidates(v, &mut prep, scratch);
        let charge = scratch.candidates.len().saturating_mul(cost);
        if charge > budget {
            return Err(Box::new(prep));
        }
        let matches = scratch
            .candidates
            .iter()
            .filter_map(|&ri| Some((ri, self.inner.run_rule(ri, &v.raw, &mut prep)?)))
            .collect();
        Ok(Outcome { charge, matches })
    }

    /// Runs `rules` on a prepared value in order, each charged to `budget`, until one no longer fits.
    fn run_until_exhausted(
        &self,
        v: &extract::Value,
        prep: &mut Prepared,
        mut budget: usize,
        rules: &[u16],
        add: &mut dyn FnMut(u16, String, &str),
    ) {
        let Some(cost) = scan_cost(v, &prep.norm) else { return };
        for &ri in rules {
            if cost > budget {
                return;
            }
            budget -= cost;
            if let Some(frag) = self.inner.run_rule(ri, &v.raw, prep) {
                add(ri, v.loc(), &frag);
            }
        }
    }
}

/// What running one rule on a value is charged to the scan budget: the bytes it scans (the normalised
/// text, or a binary value's raw bytes) plus 16; `None` when there is nothing to scan.
fn scan_cost(v: &extract::Value, norm: &str) -> Option<usize> {
    let scanned = if v.kind == Kind::Binary { v.raw.len() } else { norm.len() };
    (scanned > 0).then_some(scanned + 16)
}

/// Per-inspection scratch space.
struct Scratch {
    /// Rules to run on the current value, in the order the prefilter found them.
    candidates: Vec<u16>,
    /// Rule index → already in `candidates`.
    seen: Vec<bool>,
    /// Scratch space of the prefilter walks.
    later: literals::Scratch,
}

impl Inner {
    /// The rules to run on `v` (prepared in `prep`): those whose prefilter literals occur in the view
    /// they read, in the order the automaton finds them (in the value, then in each view that
    /// differs from it), then those without literals; header rules only on the headers they name.
    fn candidates(&self, v: &extract::Value, prep: &mut Prepared, scratch: &mut Scratch) {
        let filter = &self.filters[v.kind as usize];
        let automaton = &self.automata[filter.automaton];
        let Scratch { candidates, seen, later } = scratch;
        let mut views = 0;
        automaton.for_each_match(prep.norm.as_bytes(), later, |p| {
            views |= filter.literal_views[p.as_usize()];
            for &ri in &filter.literal_rules[p.as_usize()] {
                if !seen[ri as usize] {
                    seen[ri as usize] = true;
                    candidates.push(ri);
                }
            }
        });
        // a view can hold a literal the value lacks (`order/**/by` is `order by` in the SQL view):
        // the rules that read it are looked for there too
        for view in View::DERIVED.into_iter().filter(|view| views & view.bit() != 0) {
            let Some(text) = prep.derived(view) else { continue };
            automaton.for_each_match(text.as_bytes(), later, |p| {
                for &ri in &filter.literal_rules[p.as_usize()] {
                    if self.rules[ri as usize].view == view && !seen[ri as usize] {
                        seen[ri as usize] = true;
                        candidates.push(ri);
                    }
                }
            });
        }
        for &ri in candidates.iter() {
            seen[ri as usize] = false;
        }
        candidates.extend_from_slice(&filter.always);
        if matches!(v.kind, Kind::Header | Kind::StdHeader) {
            candidates.retain(|&ri| {
                let rule = &self.rules[ri as usize];
                (rule.headers.is_empty() || rule.headers.iter().any(|h| v.is_header(h)))
                    && !rule.skip_headers.iter().any(|h| v.is_header(h))
            });
        }
    }

    /// Runs one rule on a prepared value; on a match returns the fragment to report.
    fn run_rule(&self, ri: u16, raw: &[u8], prep: &mut Prepared) -> Option<String> {
        let rule = &self.rules[ri as usize];
        match &rule.engine {
            Engine::Regex(pattern) => {
                let required = pattern.required();
                if required.is_some() {
                    let (profile, text) = prep.profile(rule.view);
                    if !required.may_match(profile, text.as_bytes()) {
                        return None;
                    }
                }
                let view = prep.view(rule.view).as_bytes();
                let m = pattern.regex().find(view)?;
                Some(builtin::excerpt(&String::from_utf8_lossy(&view[m.range()])))
            }
            Engine::Special(check) => check.run(raw, prep.view(rule.view)),
            Engine::Protocol(_) => None,
        }
    }
}

/// Kinds with at least this many prefilter literals share one automaton over the union of their
/// literals: a request's values then walk one DFA that stays in cache instead of one per kind. Kinds
/// with fewer literals keep their own small automaton, which reports fewer useless matches.
const SHARED_AUTOMATON_MIN_LITERALS: usize = 300;

/// One kind's prefilter literals, each with the rules that use it (in rule order) and the views it
/// is a trigger of ([`KindFilter::literal_views`]), and its rules without literals.
type KindLiterals<'a> = (Vec<(&'a str, Vec<u16>, u8)>, Vec<u16>);

/// The entry of `lit` among a kind's literals, added when it is not there yet.
fn literal_entry<'a, 'l>(
    literals: &'l mut Vec<(&'a str, Vec<u16>, u8)>,
    index: &mut HashMap<&'a str, usize>,
    lit: &'a str,
) -> &'l mut (&'a str, Vec<u16>, u8) {
    let at = *index.entry(lit).or_insert_with(|| {
        literals.push((lit, Vec::new(), 0));
        literals.len() - 1
    });
    &mut literals[at]
}

impl Inner {
    fn new(rules: Vec<Rule>) -> Inner {
        let request_rules = (0..rules.len())
            .filter(|&i| matches!(rules[i].engine, Engine::Protocol(_)))
            .map(|i| i as u16)
            .collect();
        let per_kind: Vec<KindLiterals> = Kind::ALL
            .iter()
            .map(|kind| {
                let mut literals: Vec<(&str, Vec<u16>, u8)> = Vec::new();
                let mut index: HashMap<&str, usize> = HashMap::new();
                let mut always = Vec::new();
                let mut views = 0;
                for (i, r) in rules.iter().enumerate() {
                    if matches!(r.engine, Engine::Protocol(_)) || r.targets & kind.bit() == 0 {
                        continue;
                    }
                    let i = i as u16;
                    if r.prefilter.is_empty() {
                        always.push(i);
                        continue;
                    }
                    views |= r.view.bit();
                    for lit in &r.prefilter {
                        literal_entry(&mut literals, &mut index, lit).1.push(i);
                    }
                }
                for view in View::DERIVED.into_iter().filter(|view| views & view.bit() != 0) {
                    for trigger in view.triggers() {
                        literal_entry(&mut literals, &mut index, trigger).2 |= view.bit();
                    }
                }
                (literals, always)
            })
            .collect();
        let mut shared: Vec<&str> = Vec::new();
        let mut shared_index: HashMap<&str, usize> = HashMap::new();
        for (literals, _) in per_kind.iter().filter(|(l, _)| l.len() >= SHARED_AUTOMATON_MIN_LITERALS) {
            for &(lit, ..) in literals {
                shared_index.entry(lit).or_insert_with(|| {
                    shared.push(lit);
                    shared.len() - 1
                });
            }
        }
        let mut automata = vec![Literals::new(&shared)];
        let filters = per_kind
            .into_iter()
            .map(|(literals, always)| {
                if literals.len() >= SHARED_AUTOMATON_MIN_LITERALS {
                    let mut literal_rules = vec![Vec::new(); shared.len()];
                    let mut literal_views = vec![0; shared.len()];
                    for (lit, rs, views) in literals {
                        let at = shared_index.get(lit).copied().unwrap_or_default();
                        (literal_rules[at], literal_views[at]) = (rs, views);
                    }
                    KindFilter { automaton: 0, literal_rules, literal_views, always }
                } else {
                    let own: Vec<&str> = literals.iter().map(|(l, ..)| *l).collect();
                    automata.push(Literals::new(&own));
                    let (literal_rules, literal_views) =
                        literals.into_iter().map(|(_, rs, views)| (rs, views)).unzip();
                    KindFilter { automaton: automata.len() - 1, literal_rules, literal_views, always }
                }
            })
            .collect();
        Inner { rules, automata, filters, request_rules }
    }
}

/// The next number of a xorshift64 sequence: the tests' fixed pseudo-random inputs.
#[cfg(test)]
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod cover_tests;
#[cfg(test)]
mod tests;
