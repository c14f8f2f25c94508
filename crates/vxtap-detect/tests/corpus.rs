//! Regression guard on the labelled corpus (testdata/detect/corpus.jsonl): every class keeps a
//! true-positive rate of at least 97% and benign traffic a false-positive rate of at most 0.5%.
//! The full report is `cargo run --release -p vxtap-detect --example eval`.

#[path = "../examples/eval.rs"]
#[allow(dead_code)]
mod eval;

use std::collections::BTreeMap;

#[test]
fn corpus_rates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/detect/corpus.jsonl");
    let text = std::fs::read_to_string(path).expect("corpus");
    let det = vxtap_detect::Detector::builtin();
    let mut per: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let (mut benign, mut fp) = (0u32, 0u32);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (id, label, req) = eval::parse_line(line).expect("corpus line");
        let f = det.inspect(&req);
        if label == "benign" {
            benign += 1;
            if !f.is_empty() {
                fp += 1;
                eprintln!("false positive {id}: {:?}", f.iter().map(|x| x.signature_id).collect::<Vec<_>>());
            }
        } else {
            let e = per.entry(label.clone()).or_default();
            e.0 += 1;
            if f.iter().any(|x| x.attack_class.contains(&label)) {
                e.1 += 1;
            }
        }
    }
    assert!(benign >= 1000, "corpus has {benign} benign requests");
    assert!(f64::from(fp) / f64::from(benign) <= 0.005, "FPR {fp}/{benign}");
    assert_eq!(per.len(), vxtap_detect::CLASSES.len(), "every class is in the corpus: {per:?}");
    for (class, (total, hit)) in per {
        assert!(f64::from(hit) / f64::from(total) >= 0.97, "{class}: TPR {hit}/{total}");
    }
}
