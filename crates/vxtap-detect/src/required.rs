//! What a regex cannot match without: bytes and byte strings derived from the pattern's syntax tree,
//! checked against the bytes a value contains (and a string of four bytes or more against the value),
//! so a rule whose requirements are absent is skipped unrun.

use memchr::memmem;
use regex_syntax::hir::{Class, Hir, HirKind};

/// A set of bytes, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    const fn insert(&mut self, b: u8) {
        self.0[(b >> 6) as usize] |= 1 << (b & 63);
    }

    fn union(self, other: ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    fn intersects(&self, other: &ByteSet) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    /// True when `b` and, for an ASCII letter, its other case are in the set.
    fn has_both_cases(&self, b: u8) -> bool {
        self.contains(b.to_ascii_lowercase()) && self.contains(b.to_ascii_uppercase())
    }

    /// True when every byte of this set is in `other`.
    fn is_subset(&self, other: &ByteSet) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & !b == 0)
    }

    /// The bytes of the set, in order.
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.iter().enumerate().flat_map(|(word, &bits)| {
            let mut rest = bits;
            std::iter::from_fn(move || {
                let bit = (rest != 0).then(|| rest.trailing_zeros())?;
                rest &= rest - 1;
                Some((word as u32 * 64 + bit) as u8)
            })
        })
    }

    /// The bytes in both sets.
    fn intersection(self, other: ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] & other.0[i]))
    }

    /// Number of bytes in the set.
    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// The bytes that occur in `haystack`.
    pub(crate) fn of(haystack: &[u8]) -> ByteSet {
        let mut seen = [0u8; 256];
        for &b in haystack {
            seen[usize::from(b)] = 1;
        }
        // eight flags (bytes of 0 or 1) at a time: the multiplication gathers byte k's flag in bit
        // 56 + k without carries
        let mut set = ByteSet::default();
        for (i, flags) in seen.chunks_exact(8).enumerate() {
            let flags = u64::from_le_bytes(std::array::from_fn(|k| flags[k]));
            set.0[i / 8] |= (flags.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * (i % 8));
        }
        set
    }

    /// How often a byte of this set is expected in ordinary values (letters, digits and spaces
    /// weigh most), to keep the sets least likely to be present.
    fn weight(&self) -> u32 {
        16 * self.intersection(COMMONEST).len() + 4 * self.intersection(COMMON).len() + self.len()
            - self.intersection(COMMONEST.union(COMMON)).len()
    }
}

/// The set of `bytes`, for constants ([`ByteSet::of`] is the fast way for a value's bytes).
const fn set_of(bytes: &[u8]) -> ByteSet {
    let mut set = ByteSet([0; 4]);
    let mut i = 0;
    while i < bytes.len() {
        set.insert(bytes[i]);
        i += 1;
    }
    set
}

/// The bytes most frequent in ordinary values, then the next most frequent, for [`ByteSet::weight`].
const COMMONEST: ByteSet = set_of(b"abcdefghijklmnopqrstuvwxyz0123456789 ");
const COMMON: ByteSet = set_of(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ./-_=&%+");

/// At most this many sets are kept per pattern (the least likely to be present).
const MAX_SETS: usize = 4;

/// What every match of a regex contains: a byte of each of some sets, and what a [`Need`] says.
/// When a value lacks one of them, the regex cannot match anywhere in it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Required {
    sets: Vec<ByteSet>,
    need: Option<Need>,
}

/// What a match contains, as a formula over bytes and byte strings.
#[derive(Clone, Debug)]
enum Need {
    /// A byte of the set.
    Byte(ByteSet),
    /// A string of two bytes or more, ASCII letters in lower case, compared without regard to case,
    /// with the set of its bytes.
    Text(Vec<u8>, ByteSet),
    /// Every one of these.
    All(Vec<Need>),
    /// At least one of these.
    Any(Vec<Need>),
}

impl Required {
    /// The requirements of a parsed pattern. Exact by construction: only bytes that every match
    /// consumes are recorded, and any part that is not understood requires nothing.
    pub(crate) fn of(hir: &Hir) -> Required {
        let mut sets = conjunction(hir);
        sets.sort_by_key(ByteSet::weight);
        sets.dedup();
        sets.truncate(MAX_SETS);
        // a formula without strings is left to the sets, which cost less to check
        Required { sets, need: Need::of(hir).filter(|n| n.texts() > 0) }
    }

    /// True when this requires anything at all.
    pub(crate) fn is_some(&self) -> bool {
        !self.sets.is_empty() || self.need.is_some()
    }

    /// False when the view `hay`, of which `profile` was made, cannot match.
    pub(crate) fn may_match(&self, profile: &mut Profile, hay: &[u8]) -> bool {
        profile.searches = SEARCHES;
        self.sets.iter().all(|s| s.intersects(&profile.bytes))
            && self.need.as_ref().is_none_or(|n| n.holds(profile, hay))
    }
}

/// ASCII upper-case letters.
const UPPER: ByteSet = set_of(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ");

/// Strings shorter than this are not searched for: the bytes of a short string are usually all
/// there when it is not.
const MIN_SEARCHED_LEN: usize = 4;
/// Strings searched for per rule and value at most (a search costs a good part of a regex scan); the
/// others count as present when their bytes are.
const SEARCHES: u8 = 1;

/// What [`Required::may_match`] knows of one view of a value: the bytes it contains, and how many
/// more strings may be searched for in the current check.
pub(crate) struct Profile {
    bytes: ByteSet,
    /// The bytes, ASCII upper-case letters in lower case.
    folded: ByteSet,
    searches: u8,
}

impl Profile {
    /// The profile of a view.
    pub(crate) fn of(hay: &[u8]) -> Profile {
        let bytes = ByteSet::of(hay);
        let mut folded = bytes;
        // 'A'..='Z' and 'a'..='z' are bits 1..=26 and 33..=58 of the second word
        folded.0[1] |= (bytes.0[1] & UPPER.0[1]) << 32;
        Profile { bytes, folded, searches: 0 }
    }

    /// False when `hay` (of which this is the profile) cannot contain `s` (lower case) in any case.
    fn may_contain(&mut self, hay: &[u8], s: &[u8], set: &ByteSet) -> bool {
        if !set.is_subset(&self.folded) {
            return false;
        }
        // the views are lower case, so an upper-case letter is rare: `s` might be there in upper case
        if s.len() < MIN_SEARCHED_LEN || self.searches == 0 || self.bytes.intersects(&UPPER) {
            return true;
        }
        self.searches -= 1;
        memmem::find(hay, s).is_some()
    }
}

impl Need {
    /// What every match of `hir` contains; `None` when nothing is known to be required.
    fn of(hir: &Hir) -> Option<Need> {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => None,
            HirKind::Literal(lit) => Some(Need::text(&lit.0)),
            HirKind::Class(class) => class_bytes(class).map(Need::Byte),
            HirKind::Repetition(rep) if rep.min >= 1 => Need::of(&rep.sub),
            HirKind::Repetition(_) => None,
            HirKind::Capture(cap) => Need::of(&cap.sub),
            HirKind::Concat(subs) => {
                let mut all: Vec<Need> = subs.iter().filter_map(Need::of).collect();
                // a run of parts that each match one fixed string matches their concatenation
                let mut run = Vec::new();
                for sub in subs {
                    match fixed(sub) {
                        Some(s) => run.extend_from_slice(&s),
                        None => {
                            if run.len() > 1 {
                                all.push(Need::text(&run));
                            }
                            run.clear();
                        }
                    }
                }
                if run.len() > 1 {
                    all.push(Need::text(&run));
                }
                Need::all(all)
            }
            HirKind::Alternation(subs) => Need::any(subs.iter().map(Need::of).collect::<Option<_>>()?),
        }
    }

    /// A conjunction, flattened, without the byte sets its strings imply, the strings that longer
    /// ones contain and repeated strings, cheapest first.
    fn all(parts: Vec<Need>) -> Option<Need> {
        let mut all = Vec::new();
        for part in parts {
            match part {
                Need::All(inner) => all.extend(inner),
                other => all.push(other),
            }
        }
        let texts: Vec<(Vec<u8>, ByteSet)> = all
            .iter()
            .filter_map(|n| if let Need::Text(s, set) = n { Some((s.clone(), *set)) } else { None })
            .collect();
        // a set holding a byte of a string in both cases is hit whenever the string may be there
        let implied = |set: &ByteSet| texts.iter().any(|(_, t)| t.bytes().any(|b| set.has_both_cases(b)));
        // and a string is there whenever a longer one containing it is (a literal inside the fixed
        // string of its concatenation), or its first copy
        let mut kept: Vec<Vec<u8>> = Vec::new();
        all.retain(|n| match n {
            Need::Byte(set) => !implied(set),
            Need::Text(s, _) => {
                let inside = texts.iter().any(|(t, _)| t.len() > s.len() && memmem::find(t, s).is_some());
                let keep = !inside && !kept.contains(s);
                if keep {
                    kept.push(s.clone());
                }
                keep
            }
            Need::All(_) | Need::Any(_) => true,
        });
        all.sort_by_key(|n| n.rank(false));
        match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(Need::All(all)),
        }
    }

    /// A disjunction, flattened, its byte sets merged into one, cheapest first.
    fn any(parts: Vec<Need>) -> Option<Need> {
        let mut bytes: Option<ByteSet> = None;
        let mut any = Vec::new();
        for part in parts {
            match part {
                Need::Any(inner) => any.extend(inner),
                other => any.push(other),
            }
        }
        any.retain(|n| match n {
            Need::Byte(set) => {
                bytes = Some(bytes.map_or(*set, |b| b.union(*set)));
                false
            }
            _ => true,
        });
        any.extend(bytes.map(Need::Byte));
        any.sort_by_key(|n| n.rank(true));
        match any.len() {
            1 => any.pop(),
            _ => Some(Need::Any(any)),
        }
    }

    /// A string: a byte set for one byte.
    fn text(s: &[u8]) -> Need {
        match s {
            [_] => Need::Byte(ByteSet::of(s)),
            _ => {
                let lower = s.to_ascii_lowercase();
                let set = ByteSet::of(&lower);
                Need::Text(lower, set)
            }
        }
    }

    /// Evaluation order among siblings: byte sets first (they cost nothing), then strings, then
    /// formulas by the strings they look for; strings longest first in a conjunction (the least likely
    /// to be present end it soonest) and shortest first in an alternation (the likeliest end it soonest).
    fn rank(&self, any: bool) -> (usize, usize) {
        match self {
            Need::Byte(_) => (0, 0),
            Need::Text(s, _) if any => (1, s.len()),
            Need::Text(s, _) => (1, usize::MAX - s.len()),
            Need::All(_) | Need::Any(_) => (2, self.texts()),
        }
    }

    /// Strings this looks for.
    fn texts(&self) -> usize {
        match self {
            Need::Byte(_) => 0,
            Need::Text(..) => 1,
            Need::All(v) | Need::Any(v) => v.iter().map(Need::texts).sum(),
        }
    }

    /// False when the view `hay`, of which `profile` was made, cannot contain what this needs.
    fn holds(&self, profile: &mut Profile, hay: &[u8]) -> bool {
        match self {
            Need::Byte(set) => set.intersects(&profile.bytes),
            Need::Text(s, set) => profile.may_contain(hay, s, set),
            Need::All(v) => v.iter().all(|n| n.holds(profile, hay)),
            Need::Any(v) => v.iter().any(|n| n.holds(profile, hay)),
        }
    }
}

/// The one string `hir` matches, ASCII letters in lower case (a class of one letter in both cases is
/// that letter); empty for an assertion, which consumes nothing; `None` when it may match others.
fn fixed(hir: &Hir) -> Option<Vec<u8>> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(Vec::new()),
        HirKind::Literal(lit) => Some(lit.0.to_ascii_lowercase()),
        HirKind::Class(class) => {
            let set = class_bytes(class)?;
            let mut folded = set.bytes().map(|b| b.to_ascii_lowercase());
            let first = folded.next()?;
            folded.all(|b| b == first).then(|| vec![first])
        }
        _ => None,
    }
}

/// Sets of which every match of `hir` contains at least one byte each.
fn conjunction(hir: &Hir) -> Vec<ByteSet> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(lit) => lit
            .0
            .iter()
            .map(|&b| {
                let mut s = ByteSet::default();
                s.insert(b);
                s
            })
            .collect(),
        HirKind::Class(class) => class_bytes(class).into_iter().collect(),
        HirKind::Repetition(rep) if rep.min >= 1 => conjunction(&rep.sub),
        HirKind::Repetition(_) => Vec::new(),
        HirKind::Capture(cap) => conjunction(&cap.sub),
        HirKind::Concat(subs) => subs.iter().flat_map(conjunction).collect(),
        HirKind::Alternation(subs) => {
            // one byte of some branch's best set: the union of each branch's least likely set
            let mut union = ByteSet::default();
            for sub in subs {
                match conjunction(sub).into_iter().min_by_key(ByteSet::weight) {
                    Some(s) => union = union.union(s),
                    None => return Vec::new(),
                }
            }
            vec![union]
        }
    }
}

/// The bytes a class matches as a one-byte match; `None` when it is empty (it can never match, which
/// requires nothing here) or may match a multi-byte character.
fn class_bytes(class: &Class) -> Option<ByteSet> {
    let mut set = ByteSet::default();
    match class {
        Class::Bytes(c) => {
            for r in c.iter() {
                for b in r.start()..=r.end() {
                    set.insert(b);
                }
            }
        }
        Class::Unicode(c) => {
            for r in c.iter() {
                let (start, end) = (u32::from(r.start()), u32::from(r.end()));
                if end > 0x7f {
                    return None;
                }
                for b in start..=end {
                    set.insert(b as u8);
                }
            }
        }
    }
    (set != ByteSet::default()).then_some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn required(pattern: &str) -> Required {
        Required::of(&crate::rules::parse(pattern).expect("pattern"))
    }

    fn may(pattern: &str, value: &str) -> bool {
        required(pattern).may_match(&mut Profile::of(value.as_bytes()), value.as_bytes())
    }

    #[test]
    fn byte_set_of_a_haystack_holds_its_bytes() {
        let hay = [0u8, 1, 7, 8, 63, 64, 65, 127, 128, 200, 255, 255, 9];
        let set = ByteSet::of(&hay);
        for b in 0..=255u8 {
            assert_eq!(set.contains(b), hay.contains(&b), "{b}");
        }
    }

    #[test]
    fn literals_classes_and_repetitions_require_bytes() {
        assert!(!may("on[a-z]+=", "onload"));
        assert!(may("on[a-z]+=", "onload="));
        assert!(!may("union select", "UNION_SELECT"));
        assert!(may("(?:a|b)c", "bc"));
        assert!(!may("(?:a|b)c", "cc"));
        assert!(!may("x{2,}", "abc"));
    }

    #[test]
    fn optional_or_unknown_parts_require_nothing() {
        for p in ["", "^$", "a*", "(?:a|)b?", "x{0,3}", r"\b", "(?u:é)?"] {
            assert!(!required(p).is_some(), "{p}");
        }
        assert!(may("(?:a|b*)", "zzz"));
        assert!(may(r"(?u:\w)x", "x"));
    }

    #[test]
    fn strings_and_alternatives_are_required() {
        // every byte of `select` is there, the word is not
        assert!(!may(r"\bunion\s+select\b", "union selct, a tset"));
        assert!(may(r"\bunion\s+select\b", "1 union select 2"));
        // an upper-case letter: the string may be there in another case
        assert!(may(r"\bunion\s+select\b", "union selct, a tset S"));
        // one branch or the other
        assert!(!may(r"\bif\s*\(|=\s*0x", "if 0x"));
        assert!(may(r"\bif\s*\(|=\s*0x", "if("));
        assert!(may(r"\bif\s*\(|=\s*0x", "a=0x1"));
        // a string across an assertion
        assert!(!may(r"select\b\(|zz", "select ("));
        assert!(may(r"select\b\(|zz", "select("));
    }

    #[test]
    fn a_conjunction_keeps_a_string_once_and_not_inside_a_longer_one() {
        let texts = |pattern: &str| {
            let need = required(pattern).need.expect("strings are required");
            let parts = match need {
                Need::All(parts) => parts,
                one => vec![one],
            };
            let texts: Vec<Vec<u8>> = parts
                .into_iter()
                .filter_map(|n| if let Need::Text(s, _) = n { Some(s) } else { None })
                .collect();
            texts
        };
        // the literal `../` and the fixed string `x../y` around it
        assert_eq!(texts(r"x\.\./y"), [b"x../y".to_vec()]);
        // `select` in a group and after it
        assert_eq!(texts("(?:union )(select)(?:select)"), [b"select".to_vec(), b"union ".to_vec()]);
        assert!(may(r"x\.\./y", "X../Y"));
        assert!(!may(r"x\.\./y", "x../ y ../"));
    }

    #[test]
    fn never_skips_a_value_the_regex_matches() {
        let patterns = [
            r#"['"`]\s*\)*\s*(?:--[\s+-]*$|#\s*$|/\*|;\s*(?:--|#|%00))|\d\s*\)+\s*(?:--|#)\s*$"#,
            r#"(?:<[a-z!/?][^>]*?[\s/"'`]|^|["'`]\s*[\s/]*|[\s/]["'`]?)on[a-z]{3,30}\s*=\s*(?:["'`]?[^\s"'`]|["'`]\s*[a-z(])"#,
            r"(?:\.\./|\.\.\\){2,}",
            r"(?-u:\xac\xed)\x00\x05",
            r"\bunion(?:\s+all)?\s+select\b|(?-i:SELECT)\s+from|case\s+when\b.{1,10}?\bthen",
        ];
        let values = [
            "' --",
            "1)) #",
            "<img src=x onerror=alert(1)>",
            "\"onmouseover='x'",
            "../..\\",
            "a",
            "",
            "x union all select 1",
            "SELECT from",
            "case when 1 then",
            "select from",
        ];
        for p in patterns {
            let re = crate::rules::regex_of(&crate::rules::parse(p).expect("pattern")).expect("regex");
            for v in values {
                if re.is_match(v.as_bytes()) {
                    assert!(may(p, v), "{p} on {v:?}");
                }
            }
        }
    }
}
