//! Bytes a regex cannot match without: derived from the pattern's syntax tree, checked against the
//! set of bytes a value contains, so a rule whose required bytes are absent is skipped unrun.

use regex_syntax::hir::{Class, Hir, HirKind};

/// A set of bytes, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
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
        (0..=255u8)
            .filter(|&b| self.contains(b))
            .map(|b| match b {
                b'a'..=b'z' | b'0'..=b'9' | b' ' => 16,
                b'A'..=b'Z' | b'.' | b'/' | b'-' | b'_' | b'=' | b'&' | b'%' | b'+' => 4,
                _ => 1,
            })
            .sum()
    }
}

/// At most this many sets are kept per pattern (the least likely to be present).
const MAX_SETS: usize = 4;

/// Byte sets a match of a regex must each hit at least once: when a value lacks every byte of one
/// of them, the regex cannot match anywhere in it. Empty when nothing is required.
#[derive(Clone, Debug, Default)]
pub(crate) struct Required(Vec<ByteSet>);

impl Required {
    /// The requirements of a parsed pattern. Exact by construction: only bytes that every match
    /// consumes are recorded, and any part that is not understood requires nothing.
    pub(crate) fn of(hir: &Hir) -> Required {
        let mut sets = conjunction(hir);
        sets.sort_by_key(ByteSet::weight);
        sets.dedup();
        sets.truncate(MAX_SETS);
        Required(sets)
    }

    /// True when this requires anything at all.
    pub(crate) fn is_some(&self) -> bool {
        !self.0.is_empty()
    }

    /// False when a value made of the bytes `present` cannot match.
    pub(crate) fn may_match(&self, present: &ByteSet) -> bool {
        self.0.iter().all(|s| s.intersects(present))
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
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .case_insensitive(true)
            .utf8(false)
            .build()
            .parse(pattern)
            .expect("pattern");
        Required::of(&hir)
    }

    fn may(pattern: &str, value: &str) -> bool {
        required(pattern).may_match(&ByteSet::of(value.as_bytes()))
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
    fn never_skips_a_value_the_regex_matches() {
        let patterns = [
            r#"['"`]\s*\)*\s*(?:--[\s+-]*$|#\s*$|/\*|;\s*(?:--|#|%00))|\d\s*\)+\s*(?:--|#)\s*$"#,
            r#"(?:<[a-z!/?][^>]*?[\s/"'`]|^|["'`]\s*[\s/]*|[\s/]["'`]?)on[a-z]{3,30}\s*=\s*(?:["'`]?[^\s"'`]|["'`]\s*[a-z(])"#,
            r"(?:\.\./|\.\.\\){2,}",
            r"(?-u:\xac\xed)\x00\x05",
        ];
        let values =
            ["' --", "1)) #", "<img src=x onerror=alert(1)>", "\"onmouseover='x'", "../..\\", "a", ""];
        for p in patterns {
            let re = regex::bytes::RegexBuilder::new(p)
                .unicode(false)
                .case_insensitive(true)
                .build()
                .expect("regex");
            for v in values {
                if re.is_match(v.as_bytes()) {
                    assert!(may(p, v), "{p} on {v:?}");
                }
            }
        }
    }
}
