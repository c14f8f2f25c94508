//! The prefilter automata: every occurrence of every literal in a value, reported in the order of
//! an overlapping Aho-Corasick search, found by two walks over the two halves of a value at once.
//!
//! One walk is a chain of dependent table loads (the next state needs the previous one), so a value
//! waits on memory at every byte; two independent walks overlap those waits. The second walk warms
//! up beside the first instead of before it, so values from twice the longest literal (82 bytes for
//! the built-in rules) are split: 1.8–1.9 → 1.1–1.2 ns/byte at 100–186 bytes (the benchmark's
//! values walked average 186), 1.4 → 1.15 at 300, on the built-in rules' largest automaton. A third
//! walk gained another 3–6% on 1–4 KiB values, not worth its code; four did no better.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::{Anchored, MatchKind, PatternID, dfa, nfa};

/// An automaton over the prefilter literals of one or more kinds of value.
pub(crate) enum Literals {
    /// The usual form: one table load per byte.
    Dfa(dfa::DFA),
    /// When the DFA would be too large.
    Nfa(nfa::contiguous::NFA),
}

impl Literals {
    /// An automaton reporting every occurrence of every literal (standard semantics): at one end
    /// position the longer literal first, so kinds sharing an automaton see their own literals in the
    /// order their own automaton would report them.
    pub(crate) fn new(literals: &[&str]) -> Literals {
        dfa::Builder::new()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(literals)
            .map(Literals::Dfa)
            .or_else(|_| {
                nfa::contiguous::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .build(literals)
                    .map(Literals::Nfa)
            })
            .unwrap_or_else(|e| panic!("prefilter automaton: {e}"))
    }

    /// Calls `report` with the literal of every occurrence in `hay`, ordered by end position and, at
    /// one end, as an overlapping search reports them.
    pub(crate) fn for_each_match(&self, hay: &[u8], scratch: &mut Scratch, report: impl FnMut(PatternID)) {
        match self {
            Literals::Dfa(a) => scan(a, hay, scratch, report),
            Literals::Nfa(a) => scan(a, hay, scratch, report),
        }
    }
}

/// The special states each walk passed through, in order.
#[derive(Default)]
pub(crate) struct Scratch {
    first: Vec<StateID>,
    second: Vec<StateID>,
}

/// Values shorter than this (or than twice the longest literal) are walked in one piece: the two
/// walks would take nearly as many steps.
const SPLIT_MIN_LEN: usize = 64;

fn scan<A: Automaton>(aut: &A, hay: &[u8], scratch: &mut Scratch, mut report: impl FnMut(PatternID)) {
    let Ok(start) = aut.start_state(Anchored::No) else { return };
    let Scratch { first, second } = scratch;
    first.clear();
    second.clear();
    // The state after a byte is the trie node of the longest suffix that is a prefix of a literal,
    // which the last `lead` bytes decide: a walk started `lead` bytes early is in step by then.
    let lead = aut.max_pattern_len();
    if hay.len() < SPLIT_MIN_LEN.max(2 * lead) {
        walk(aut, start, hay, first);
    } else {
        // The first walk takes the bytes before `mid` and finds the matches ending there; the
        // second starts `lead` bytes before `mid`, notes nothing until it reaches `mid`, and finds
        // those ending after it. `mid` gives both walks the same number of steps.
        let mid = (hay.len() + lead) / 2;
        let (head, tail) = (&hay[..mid], &hay[mid - lead..]);
        let (mut a, mut b) = (start, start);
        for (&x, &y) in head[..lead].iter().zip(&tail[..lead]) {
            a = aut.next_state(Anchored::No, a, x);
            b = aut.next_state(Anchored::No, b, y);
            if aut.is_special(a) {
                first.push(a);
            }
        }
        for (&x, &y) in head[lead..].iter().zip(&tail[lead..]) {
            a = aut.next_state(Anchored::No, a, x);
            b = aut.next_state(Anchored::No, b, y);
            if aut.is_special(a) {
                first.push(a);
            }
            if aut.is_special(b) {
                second.push(b);
            }
        }
        walk(aut, b, &tail[mid..], second);
    }
    for &sid in first.iter().chain(second.iter()) {
        if aut.is_match(sid) {
            (0..aut.match_len(sid)).for_each(|i| report(aut.match_pattern(sid, i)));
        }
    }
}

/// Walks `hay` from state `sid`, noting the special states passed through; returns the last state.
fn walk<A: Automaton>(aut: &A, mut sid: StateID, hay: &[u8], special: &mut Vec<StateID>) -> StateID {
    for &b in hay {
        sid = aut.next_state(Anchored::No, sid, b);
        if aut.is_special(sid) {
            special.push(sid);
        }
    }
    sid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_report_as_an_overlapping_search() {
        let literals = ["a", "ab", "bab", "b", "abba", "select", "elec", "'", "' or "];
        let reference = aho_corasick::AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(literals)
            .expect("automaton");
        let dfa = Literals::new(&literals);
        let nfa = Literals::Nfa(nfa::contiguous::NFA::new(literals).expect("automaton"));
        let mut scratch = Scratch::default();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for len in (0..700).step_by(7) {
            let hay: Vec<u8> =
                (0..len).map(|_| b"ab' orselc"[(crate::xorshift(&mut state) % 10) as usize]).collect();
            let expected: Vec<PatternID> =
                reference.find_overlapping_iter(&hay).map(|m| m.pattern()).collect();
            for aut in [&dfa, &nfa] {
                let mut got = Vec::new();
                aut.for_each_match(&hay, &mut scratch, |p| got.push(p));
                assert_eq!(got, expected, "{}", String::from_utf8_lossy(&hay));
            }
        }
    }
}
