//! The rules file: parsing and compiling `configs/rules.toml`-style rule sets.

use std::path::PathBuf;
use std::sync::OnceLock;

use regex_automata::meta::{self, Regex};
use regex_syntax::hir::Hir;
use serde::Deserialize;

use crate::builtin::{ProtoCheck, Special};
use crate::extract::Kind;
use crate::normalize;
use crate::required::Required;

/// Why a rule set could not be loaded. Every variant names the file, line or rule at fault.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("cannot read rules file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the rules file's shape; the message gives the line.
    #[error("rules file {origin}: {message}")]
    Syntax {
        /// The file name, or `<string>`.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// One rule is wrong (bad regex, unknown target, engine or class, duplicate id, …).
    #[error("rules file {origin}, line {line}: rule {id} ({name}): {message}")]
    Rule {
        /// The file name, or `<string>`.
        origin: String,
        /// 1-based line of the rule's `id` key (0 when it cannot be found).
        line: usize,
        /// The rule's signature id.
        id: u32,
        /// The rule's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: u32,
    #[serde(default = "one")]
    rev: u32,
    name: String,
    class: Vec<String>,
    #[serde(default)]
    category: Option<String>,
    severity: u8,
    #[serde(default = "regex_engine")]
    engine: String,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    skip_headers: Vec<String>,
    #[serde(default = "norm_view")]
    view: String,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    prefilter: Vec<String>,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

fn one() -> u32 {
    1
}
fn regex_engine() -> String {
    "regex".into()
}
fn norm_view() -> String {
    "norm".into()
}

/// The attack classes a rule may name.
pub const CLASSES: &[&str] = &[
    "sqli",
    "xss",
    "lfi",
    "rfi",
    "cmdi",
    "ssrf",
    "xxe",
    "ssti",
    "nosqli",
    "log4shell",
    "crlf",
    "shellshock",
    "deserialization",
    "code_injection",
    "scanner",
    "protocol",
];

/// Which transformation of a value a rule matches against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// Fully decoded, lower-cased.
    Norm,
    /// Norm, SQL comments removed and whitespace collapsed.
    Sql,
    /// Norm, path separators normalised.
    Path,
    /// Norm without tab / CR / LF, other whitespace runs one space.
    Markup,
    /// Norm with every run of whitespace one space.
    Spaced,
}

impl View {
    /// How the view is made from the normalised value (`None` when it is that value, and from the
    /// function when the view would be the same text); the one place views map to their functions.
    pub(crate) fn derivation(self) -> Option<fn(&str) -> Option<String>> {
        match self {
            View::Norm => None,
            View::Sql => Some(normalize::sql_view_if_changed),
            View::Path => Some(normalize::path_view_if_changed),
            View::Markup => Some(normalize::markup_view_if_changed),
            View::Spaced => Some(normalize::spaced_view_if_changed),
        }
    }

    /// The views made from the normalised value, in the order the prefilter walks them.
    pub(crate) const DERIVED: [View; 4] = [View::Sql, View::Path, View::Markup, View::Spaced];

    /// How many views there are: the size of a table indexed by `View as usize`.
    pub(crate) const COUNT: usize = View::DERIVED.len() + 1;

    /// What a value holds, one at least, when this view of it differs from it.
    pub(crate) fn triggers(self) -> &'static [&'static str] {
        match self {
            View::Norm => &[],
            View::Sql => normalize::SQL_VIEW_TRIGGERS,
            View::Path => normalize::PATH_VIEW_TRIGGERS,
            View::Markup => normalize::MARKUP_VIEW_TRIGGERS,
            View::Spaced => normalize::SPACED_VIEW_TRIGGERS,
        }
    }

    /// This view's bit in a set of views.
    pub(crate) fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// How a rule decides.
#[derive(Debug)]
pub(crate) enum Engine {
    /// A regex pattern.
    Regex(Pattern),
    Special(Special),
    Protocol(ProtoCheck),
}

/// A regex rule's pattern, compiled when it is first needed (see [`Compile`]) in two steps: its
/// requirements when a value first reaches the rule, its regex when a value first holds them. Values
/// often reach a rule without them (11 of the 30 rules reached on the 2,000-connection mix), and the
/// regex is most of the cost.
#[derive(Debug)]
pub(crate) struct Pattern {
    source: String,
    parsed: OnceLock<Parsed>,
    /// Built as the `regex` crate would ([`regex_of`]).
    regex: OnceLock<Regex>,
}

/// A pattern's syntax tree, kept to build its regex from, and the requirements read from it.
#[derive(Debug)]
struct Parsed {
    hir: Hir,
    /// The bytes its matches cannot do without: a value lacking them is not scanned.
    required: Required,
}

impl Parsed {
    fn of(source: &str) -> Result<Parsed, String> {
        let hir = parse(source)?;
        let required = Required::of(&hir);
        Ok(Parsed { hir, required })
    }
}

impl Pattern {
    /// The pattern of `source`, compiled now or later as `when` says; the error is the parser's or
    /// the regex builder's message.
    fn new(source: &str, when: Compile) -> Result<Pattern, String> {
        let (parsed, regex) = match when {
            Compile::AtLoad => {
                let parsed = Parsed::of(source)?;
                let regex = regex_of(&parsed.hir)?;
                (OnceLock::from(parsed), OnceLock::from(regex))
            }
            Compile::OnFirstUse => (OnceLock::new(), OnceLock::new()),
        };
        Ok(Pattern { source: source.to_string(), parsed, regex })
    }

    /// The bytes the pattern's matches cannot do without. A pattern not compiled at load is one of
    /// the built-in set's, which its tests compile, so it cannot fail here.
    pub(crate) fn required(&self) -> &Required {
        &self.parsed().required
    }

    /// The pattern's regex (see [`Pattern::required`] on why it cannot fail).
    pub(crate) fn regex(&self) -> &Regex {
        self.regex.get_or_init(|| {
            regex_of(&self.parsed().hir).unwrap_or_else(|e| panic!("built-in pattern does not compile: {e}"))
        })
    }

    fn parsed(&self) -> &Parsed {
        self.parsed.get_or_init(|| {
            Parsed::of(&self.source).unwrap_or_else(|e| panic!("built-in pattern does not parse: {e}"))
        })
    }

    /// The pattern as written.
    #[cfg(test)]
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Whether a value has reached the rule (its requirements are compiled) and whether one held
    /// them (its regex is built).
    #[cfg(test)]
    pub(crate) fn compiled(&self) -> (bool, bool) {
        (self.parsed.get().is_some(), self.regex.get().is_some())
    }
}

/// When a rule set's patterns are compiled.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Compile {
    /// All at load (spread over the cores when there are enough rules), so that a bad pattern is an
    /// error there: rules files.
    AtLoad,
    /// Each when a value first reaches its rule: the built-in set, whose patterns its tests compile.
    /// Compiling patterns is most of the detector's start-up, which `vxtap pcap` waits for, and an
    /// ordinary capture reaches only some of them (docs/detection.md, start-up).
    OnFirstUse,
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) id: u32,
    pub(crate) rev: u32,
    pub(crate) name: String,
    pub(crate) category: String,
    pub(crate) severity: u8,
    pub(crate) classes: Vec<String>,
    pub(crate) targets: u32,
    pub(crate) headers: Vec<String>,
    pub(crate) skip_headers: Vec<String>,
    pub(crate) view: View,
    pub(crate) engine: Engine,
    pub(crate) prefilter: Vec<String>,
}

fn default_category(class: &str) -> &'static str {
    match class {
        "scanner" => "Detection of a Network Scan",
        "protocol" => "Potentially Bad Traffic",
        "lfi" | "xxe" | "ssrf" => "Attempted Information Leak",
        "cmdi" | "code_injection" | "deserialization" | "log4shell" | "shellshock" | "rfi" | "ssti" => {
            "Attempted Administrator Privilege Gain"
        }
        _ => "Web Application Attack",
    }
}

fn target_mask(names: &[String]) -> Result<u32, String> {
    let mut mask = 0u32;
    for n in names {
        let bits = match n.as_str() {
            "all" => Kind::ALL.iter().filter(|&&k| k != Kind::Binary).fold(0, |m, k| m | k.bit()),
            "values" => [
                Kind::Arg,
                Kind::Form,
                Kind::Json,
                Kind::XmlValue,
                Kind::Multipart,
                Kind::Cookie,
                Kind::Header,
                Kind::Body,
                Kind::Path,
            ]
            .iter()
            .fold(0, |m, k| m | k.bit()),
            "names" => Kind::ArgName.bit() | Kind::JsonKey.bit(),
            other => Kind::ALL.iter().find(|k| k.name() == other).map(|k| k.bit()).ok_or_else(|| {
                format!("unknown target `{other}` (known: all, values, names, {})", kind_names())
            })?,
        };
        mask |= bits;
    }
    Ok(mask)
}

fn kind_names() -> String {
    Kind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// Parses and checks a rules file's text, compiling its patterns `when` says. `origin` names it in
/// errors.
pub(crate) fn compile(text: &str, origin: &str, when: Compile) -> Result<Vec<Rule>, RulesError> {
    let file: RulesFile = toml::from_str(text)
        .map_err(|e| RulesError::Syntax { origin: origin.to_string(), message: e.to_string() })?;
    // Compiling patterns is most of the detector's start-up time, which `vxtap pcap` waits for:
    // when they are compiled at load, that is spread over the cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match when {
        Compile::AtLoad => cores.min(file.rule.len() / RULES_PER_THREAD).max(1),
        Compile::OnFirstUse => 1,
    };
    let compiled = spread(&file.rule, threads, |def| compile_rule(def, text, origin, when));
    let mut rules = Vec::with_capacity(compiled.len());
    let mut seen = std::collections::HashSet::new();
    for (def, rule) in file.rule.iter().zip(compiled) {
        if !seen.insert(def.id) {
            return Err(rule_error(def, text, origin, "duplicate signature id".into()));
        }
        rules.push(rule?);
    }
    Ok(rules)
}

/// Rules compiled per thread at least: below that, starting a thread costs more than it saves.
const RULES_PER_THREAD: usize = 16;

/// `f` applied to every item on `threads` threads; the results in the items' order.
pub(crate) fn spread<I: Sync, T: Send>(items: &[I], threads: usize, f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    // Thread t takes items t, t + threads, …: neighbouring items (rules) are often alike in cost.
    let f = &f;
    let mut parts: Vec<std::vec::IntoIter<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || items.iter().skip(t).step_by(threads).map(f).collect::<Vec<T>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)).into_iter())
            .collect()
    });
    (0..items.len()).filter_map(|i| parts[i % threads].next()).collect()
}

fn rule_error(def: &RuleDef, text: &str, origin: &str, message: String) -> RulesError {
    RulesError::Rule {
        origin: origin.to_string(),
        line: find_line(text, def.id),
        id: def.id,
        name: def.name.clone(),
        message,
    }
}

/// One rule definition checked and compiled; the error names the rule and its line.
fn compile_rule(def: &RuleDef, text: &str, origin: &str, when: Compile) -> Result<Rule, RulesError> {
    let err = |message: String| rule_error(def, text, origin, message);
    if !(1..=3).contains(&def.severity) {
        return Err(err(format!("severity {} is not 1..3", def.severity)));
    }
    if def.class.is_empty() {
        return Err(err("no class".into()));
    }
    if let Some(c) = def.class.iter().find(|c| !CLASSES.contains(&c.as_str())) {
        return Err(err(format!("unknown class `{c}` (known: {})", CLASSES.join(", "))));
    }
    let view = match def.view.as_str() {
        "norm" => View::Norm,
        "sql" => View::Sql,
        "path" => View::Path,
        "markup" => View::Markup,
        "spaced" => View::Spaced,
        v => return Err(err(format!("unknown view `{v}` (known: norm, sql, path, markup, spaced)"))),
    };
    let engine = match def.engine.as_str() {
        "regex" => {
            let pat = def.pattern.as_deref().ok_or_else(|| err("regex rule without `pattern`".into()))?;
            if def.prefilter.is_empty() {
                return Err(err(
                    "regex rule without `prefilter` literals (every rule needs one, for speed)".into()
                ));
            }
            Engine::Regex(Pattern::new(pat, when).map_err(|e| err(format!("bad pattern: {e}")))?)
        }
        "special" => {
            let check = def.check.as_deref().ok_or_else(|| err("special rule without `check`".into()))?;
            Engine::Special(Special::parse(check).ok_or_else(|| err(format!("unknown check `{check}`")))?)
        }
        "protocol" => {
            let check = def.check.as_deref().ok_or_else(|| err("protocol rule without `check`".into()))?;
            Engine::Protocol(
                ProtoCheck::parse(check).ok_or_else(|| err(format!("unknown protocol check `{check}`")))?,
            )
        }
        e => return Err(err(format!("unknown engine `{e}` (known: regex, special, protocol)"))),
    };
    if !matches!(engine, Engine::Protocol(_)) && def.targets.is_empty() {
        return Err(err("no `targets`".into()));
    }
    let targets = target_mask(&def.targets).map_err(err)?;
    let reads_raw_bytes = matches!(engine, Engine::Special(check) if check.reads_raw_bytes());
    if targets & Kind::Binary.bit() != 0 && !(reads_raw_bytes && def.prefilter.is_empty()) {
        return Err(err(
            "only a check of raw bytes (java-serialized) without `prefilter` can target `binary`: its bytes are not text"
                .into(),
        ));
    }
    if def.prefilter.iter().any(|p| p.is_empty()) {
        return Err(err("empty prefilter literal".into()));
    }
    let category = def.category.clone().unwrap_or_else(|| default_category(&def.class[0]).to_string());
    Ok(Rule {
        id: def.id,
        rev: def.rev,
        name: def.name.clone(),
        category,
        severity: def.severity,
        classes: def.class.clone(),
        targets,
        headers: def.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        skip_headers: def.skip_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        view,
        engine,
        prefilter: def.prefilter.iter().map(|p| p.to_lowercase()).collect(),
    })
}

/// A rule's regex, built from its pattern's syntax tree as the `regex` crate builds a `bytes::Regex`
/// (leftmost-first, empty matches anywhere) with 4 MiB for its NFA and for each lazy-DFA cache, but
/// without a literal prefilter of its own: a rule runs only on values that hold its prefilter
/// literals and required bytes already, so extracting literals (about 30% of building a regex, which
/// a run waits for when a value first reaches the rule) bought no speed (docs/detection.md).
pub(crate) fn regex_of(hir: &Hir) -> Result<Regex, String> {
    let config = meta::Config::new()
        .utf8_empty(false)
        .auto_prefilter(false)
        .nfa_size_limit(Some(4 << 20))
        .hybrid_cache_capacity(4 << 20);
    meta::Builder::new().configure(config).build_from_hir(hir).map_err(|e| e.to_string())
}

/// The syntax tree of a rule's pattern, parsed as the `regex` crate parses a case-insensitive
/// `bytes::Regex` without Unicode: the rule's regex and its requirements are both built from it. The
/// error is the parser's message, which points at the fault in the pattern.
pub(crate) fn parse(pattern: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .case_insensitive(true)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())
}

fn find_line(text: &str, id: u32) -> usize {
    let want = id.to_string();
    text.lines()
        .position(|l| {
            let t = l.trim();
            t.strip_prefix("id").map(str::trim_start).and_then(|r| r.strip_prefix('=')).map(str::trim)
                == Some(want.as_str())
        })
        .map_or(0, |p| p + 1)
}
