//! Proof that every regex rule's prefilter literals cover its pattern: no text the rule would match
//! lacks all of them. The literals are written by hand beside each pattern, and a value holding none
//! is never shown to the rule, so a gap is a silent miss (docs/detection.md, prefilter).
//!
//! The proof walks two automata in step: a DFA for the pattern, started where a match starts, and an
//! Aho-Corasick automaton over the rule's literals. Every pair of states reachable without passing a
//! literal is visited; if one of them is a match of the pattern, the bytes that led there are a
//! value the rule would match and never see, and the test prints them.
//!
//! Only text the rule's view can hold counts: no upper-case letter, and none of the view's triggers
//! (a test in `normalize` holds each view to that). A pattern's counted repetitions above
//! [`MAX_COUNT`] are taken as unbounded, which keeps its DFA small and only widens what it matches:
//! a proof for the wider pattern holds for the rule's, and a value printed is checked against the
//! rule's own regex.
//!
//! The same DFAs give a second test: a rule is also skipped when a value lacks the bytes its
//! pattern's matches need (`required.rs`), derived from the syntax tree by rules that are exact by
//! construction. Matches drawn at random from each DFA, and confirmed by the rule's regex, must
//! all pass that check. A third test sends those of them that decode to themselves as a query
//! argument through the whole detector, and the rule must report each.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use aho_corasick::automaton::{Automaton as _, StateID as AcState};
use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Hir, HirKind, Repetition};

use crate::rules::{self, Compile, Engine, Rule};

/// Counted repetitions up to this many stay as they are; longer ones are taken as unbounded.
const MAX_COUNT: u32 = 3;

/// `hir` with every repetition of more than [`MAX_COUNT`] made unbounded: it matches all `hir` does.
fn widened(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Repetition(r) => {
            let max = r.max.filter(|&m| m <= MAX_COUNT);
            Hir::repetition(Repetition { max, sub: Box::new(widened(&r.sub)), ..r.clone() })
        }
        HirKind::Capture(c) => widened(&c.sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(widened).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(widened).collect()),
        _ => hir.clone(),
    }
}

/// Most pairs (or, when sampling, states) one rule may visit: far above what the built-in rules need
/// (835 pairs and 1,758 states at most when this was written), low enough that a pattern whose DFA
/// grows without bound fails the test instead of hanging it.
const MAX_PAIRS: usize = 4_000_000;

/// The byte before a match, standing for each context a pattern's look-behind can tell apart: the
/// start of the text, a line feed, a word byte, another byte.
const BEFORE: [Option<u8>; 4] = [None, Some(b'\n'), Some(b'a'), Some(b' ')];

/// An anchored DFA reporting every match of `pattern` widened ([`widened`]).
fn widened_dfa(pattern: &str) -> Result<dense::DFA<Vec<u32>>, String> {
    let hir = rules::parse(pattern)?;
    let nfa = thompson::Compiler::new()
        .configure(thompson::Config::new().utf8(false).shrink(true))
        .build_from_hir(&widened(&hir))
        .map_err(|e| e.to_string())?;
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .match_kind(MatchKind::All)
                .dfa_size_limit(Some(64 << 20))
                .determinize_size_limit(Some(64 << 20)),
        )
        .build_from_nfa(&nfa)
        .map_err(|e| e.to_string())
}

/// A value the rule would match without any of its literals, or `None`; `Err` when the proof gave up.
fn uncovered(rule: &Rule, pattern: &str) -> Result<Option<Vec<u8>>, String> {
    let dfa = widened_dfa(pattern)?;
    // a literal ends the walk, and so does a trigger of the view: the view never holds one
    let stops: Vec<&str> =
        rule.prefilter.iter().map(String::as_str).chain(rule.view.triggers().iter().copied()).collect();
    let literals = aho_corasick::dfa::DFA::new(&stops).map_err(|e| e.to_string())?;
    let ac_start = literals.start_state(aho_corasick::Anchored::No).map_err(|e| e.to_string())?;

    // every pair reached, with the pair it was reached from and the byte that led there
    let mut reached: HashMap<(StateID, AcState), (usize, u8)> = HashMap::new();
    let mut order: Vec<(StateID, AcState)> = Vec::new();
    // the bytes that led to pair `at`, after the byte standing for the context before the match
    let witness =
        |order: &[(StateID, AcState)], reached: &HashMap<_, (usize, u8)>, mut at, before: Option<u8>| {
            let mut bytes = Vec::new();
            while let Some(&(from, byte)) = reached.get(&order[at]).filter(|(from, _)| *from != usize::MAX) {
                bytes.push(byte);
                at = from;
            }
            bytes.extend(before);
            bytes.reverse();
            bytes
        };
    for before in BEFORE {
        reached.clear();
        order.clear();
        let config = start::Config::new().anchored(Anchored::Yes).look_behind(before);
        let dfa_start = dfa.start_state(&config).map_err(|e| e.to_string())?;
        let ac = before.map_or(ac_start, |b| literals.next_state(aho_corasick::Anchored::No, ac_start, b));
        if literals.is_match(ac) {
            continue;
        }
        reached.insert((dfa_start, ac), (usize::MAX, 0));
        order.push((dfa_start, ac));
        let mut next = 0;
        while next < order.len() {
            let (d, a) = order[next];
            if dfa.is_match_state(dfa.next_eoi_state(d)) {
                return Ok(Some(witness(&order, &reached, next, before)));
            }
            // views are lower-cased, so a match holding an upper-case letter is never walked
            for byte in (0..=255u8).filter(|b| !b.is_ascii_uppercase()) {
                let d2 = dfa.next_state(d, byte);
                let a2 = literals.next_state(aho_corasick::Anchored::No, a, byte);
                if dfa.is_dead_state(d2) || literals.is_match(a2) {
                    continue;
                }
                if dfa.is_match_state(d2) {
                    let mut bytes = witness(&order, &reached, next, before);
                    bytes.push(byte);
                    return Ok(Some(bytes));
                }
                if let Entry::Vacant(slot) = reached.entry((d2, a2)) {
                    slot.insert((next, byte));
                    order.push((d2, a2));
                    if order.len() > MAX_PAIRS {
                        return Err(format!("more than {MAX_PAIRS} pairs of states"));
                    }
                }
            }
            next += 1;
        }
    }
    Ok(None)
}

#[test]
fn every_regex_rule_sees_every_value_it_would_match() {
    let rules = rules::compile(crate::BUILTIN_RULES, "built in", Compile::OnFirstUse).expect("rules");
    let mut gaps = Vec::new();
    for rule in &rules {
        let Engine::Regex(pattern) = &rule.engine else { continue };
        match uncovered(rule, pattern.source()) {
            Ok(None) => {}
            Ok(Some(value)) if pattern.regex().find(&value).is_none() => gaps.push(format!(
                "rule {} ({}): proof failed on a value only the widened pattern matches: {:?}",
                rule.id,
                rule.name,
                String::from_utf8_lossy(&value)
            )),
            Ok(Some(value)) => gaps.push(format!(
                "rule {} ({}) matches {:?} without any of {:?}",
                rule.id,
                rule.name,
                String::from_utf8_lossy(&value),
                rule.prefilter
            )),
            Err(e) => gaps.push(format!("rule {} ({}): proof gave up: {e}", rule.id, rule.name)),
        }
    }
    assert!(gaps.is_empty(), "{}", gaps.join("\n"));
}

/// Texts of bytes in `alphabet` the DFA accepts, `count` of them drawn at random: walks from the
/// start (at the start of a text) that take only bytes after which a match can still be reached,
/// and stop at a match with probability 1/4, or past [`SAMPLE_LEN`] bytes at the nearest one.
fn sample_matches(
    dfa: &dense::DFA<Vec<u32>>,
    alphabet: &[u8],
    count: usize,
    seed: &mut u64,
) -> Result<Vec<Vec<u8>>, String> {
    let start = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)).map_err(|e| e.to_string())?;
    // the states reachable from the start, each with its transitions to live states
    let mut index = HashMap::from([(start, 0)]);
    let mut states = vec![start];
    let mut edges: Vec<Vec<(u8, usize)>> = Vec::new();
    while edges.len() < states.len() {
        let from = states[edges.len()];
        let mut out = Vec::new();
        for &byte in alphabet {
            let to = dfa.next_state(from, byte);
            if dfa.is_dead_state(to) {
                continue;
            }
            let at = *index.entry(to).or_insert_with(|| {
                states.push(to);
                states.len() - 1
            });
            out.push((byte, at));
        }
        edges.push(out);
        if states.len() > MAX_PAIRS {
            return Err(format!("more than {MAX_PAIRS} states"));
        }
    }
    // each state's distance in bytes to the nearest match (`usize::MAX`: none can be reached)
    let mut distance: Vec<usize> = states
        .iter()
        .map(|&s| if dfa.is_match_state(dfa.next_eoi_state(s)) { 0 } else { usize::MAX })
        .collect();
    let mut into: Vec<Vec<usize>> = vec![Vec::new(); states.len()];
    for (from, out) in edges.iter().enumerate() {
        for &(_, to) in out {
            into[to].push(from);
        }
    }
    let mut queue: std::collections::VecDeque<usize> =
        (0..states.len()).filter(|&s| distance[s] == 0).collect();
    while let Some(to) = queue.pop_front() {
        for &from in &into[to] {
            if distance[from] == usize::MAX {
                distance[from] = distance[to] + 1;
                queue.push_back(from);
            }
        }
    }
    let mut texts = Vec::new();
    if distance[0] == usize::MAX {
        return Ok(texts);
    }
    for _ in 0..count {
        let (mut at, mut text) = (0, Vec::new());
        while distance[at] > 0 || (text.len() < SAMPLE_LEN && crate::xorshift(seed) % 4 != 0) {
            let steps: Vec<&(u8, usize)> = edges[at]
                .iter()
                .filter(|(_, to)| {
                    distance[*to] != usize::MAX && (text.len() < SAMPLE_LEN || distance[*to] < distance[at])
                })
                .collect();
            let Some(&&(byte, to)) = steps.get(crate::xorshift(seed) as usize % steps.len().max(1)) else {
                break;
            };
            text.push(byte);
            at = to;
        }
        texts.push(text);
    }
    Ok(texts)
}

/// Bytes a sampled match grows to before it heads for the nearest end.
const SAMPLE_LEN: usize = 120;

#[test]
fn sampled_matches_hold_what_their_rule_requires() {
    use crate::required::Profile;
    let rules = rules::compile(crate::BUILTIN_RULES, "built in", Compile::OnFirstUse).expect("rules");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let (mut checked, mut failures) = (0, Vec::new());
    for rule in &rules {
        let Engine::Regex(pattern) = &rule.engine else { continue };
        let dfa = widened_dfa(pattern.source()).expect("the cover test builds the same DFA");
        let every_byte: Vec<u8> = (0..=255).collect();
        for text in sample_matches(&dfa, &every_byte, 300, &mut seed).expect("states") {
            if pattern.regex().find(&text).is_none() {
                continue;
            }
            checked += 1;
            if !pattern.required().may_match(&mut Profile::of(&text), &text) {
                failures.push(format!("rule {}: {:?}", rule.id, String::from_utf8_lossy(&text)));
            }
        }
    }
    assert!(failures.is_empty(), "the requirements skip matches:\n{}", failures.join("\n"));
    // most samples of the widened patterns are matches of the rules' own
    assert!(checked > 57 * 300 / 2, "only {checked} samples were matches");
}

#[test]
fn sampled_matches_sent_as_an_argument_are_reported_by_their_rule() {
    use crate::extract::Kind;
    use crate::tests::{enc, get};
    let det = crate::Detector::builtin();
    let rules = rules::compile(crate::BUILTIN_RULES, "built in", Compile::OnFirstUse).expect("rules");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    // what a normalised value is made of, mostly: printable ASCII in lower case, tab, CR, LF
    let text_bytes: Vec<u8> = (b' '..=b'~').chain(*b"\t\r\n").filter(|b| !b.is_ascii_uppercase()).collect();
    let (mut sent, mut missed) = (0, Vec::new());
    for rule in rules.iter().filter(|r| r.targets & Kind::Arg.bit() != 0) {
        let Engine::Regex(pattern) = &rule.engine else { continue };
        let dfa = widened_dfa(pattern.source()).expect("the cover test builds the same DFA");
        for text in sample_matches(&dfa, &text_bytes, 300, &mut seed).expect("states") {
            // only a value the normaliser leaves as it is, and whose view the rule's regex matches
            let encoded = enc(&text);
            if crate::normalize::normalize(encoded.as_bytes(), true).0.as_bytes() != text {
                continue;
            }
            let norm = String::from_utf8_lossy(&text);
            let view =
                rule.view.derivation().and_then(|derive| derive(&norm)).unwrap_or_else(|| norm.to_string());
            if pattern.regex().find(view.as_bytes()).is_none() {
                continue;
            }
            sent += 1;
            let findings = det.inspect(&get(&format!("/s?q={encoded}")));
            if !findings.iter().any(|f| f.signature_id == rule.id) {
                missed.push(format!("rule {}: {norm:?}", rule.id));
            }
        }
    }
    assert!(missed.is_empty(), "{} of {sent} not reported:\n{}", missed.len(), missed.join("\n"));
    assert!(sent > 10_000, "only {sent} samples decode to themselves");
}
