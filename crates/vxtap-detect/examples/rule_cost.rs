//! Developer tool: how much each rule costs on the benchmark's typical mix (time saved without it).
//!
//! `cargo run --release -p vxtap-detect --example rule_cost`
#[path = "../benches/detect.rs"]
#[allow(dead_code)]
mod bench;

use std::time::Instant;

use vxtap_detect::{BUILTIN_RULES, Detector};

fn time(det: &Detector, mix: &[vxtap_http::Request]) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..300 {
            for r in mix {
                std::hint::black_box(det.inspect(r));
            }
        }
        best = best.min(t.elapsed().as_secs_f64() / (300.0 * mix.len() as f64));
    }
    best
}

fn main() {
    let mix = bench::mix();
    let full = Detector::builtin();
    let base = time(&full, &mix);
    println!("all rules: {:.2} us/request ({:.0} req/s)", base * 1e6, 1.0 / base);
    let blocks: Vec<&str> = BUILTIN_RULES.split("\n[[rule]]\n").collect();
    let empty = Detector::from_rules_str("", "empty").expect("empty");
    println!("no rules: {:.2} us/request", time(&empty, &mix) * 1e6);
    let mut costs = Vec::new();
    for i in 1..blocks.len() {
        let text: String = blocks
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, b)| if j == 0 { b.to_string() } else { format!("\n[[rule]]\n{b}") })
            .collect();
        let det = Detector::from_rules_str(&text, "x").expect("rules");
        let id = blocks[i].lines().find(|l| l.starts_with("id")).unwrap_or("?").to_string();
        costs.push((base - time(&det, &mix), id));
    }
    costs.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (c, id) in costs.iter().take(15) {
        println!("{:>8.2} us  {id}", c * 1e6);
    }
}
