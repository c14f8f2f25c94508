//! TEMPORARY equivalence dump (to be deleted).
#[path = "eval.rs"]
#[allow(dead_code)]
mod eval;
use vxtap_detect::{Detector, Limits};
fn main() {
    let det = Detector::builtin();
    let small = Detector::builtin().with_limits(Limits {
        max_scan_bytes: 2000,
        max_value_bytes: 64,
        ..Limits::default()
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args[0] == "--time" {
        let reps: usize = args[1].parse().unwrap();
        let text = std::fs::read_to_string(&args[2]).unwrap();
        let reqs: Vec<_> = text.lines().filter_map(eval::parse_line).map(|x| x.2).collect();
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..reps {
            let t = std::time::Instant::now();
            for r in &reqs {
                n += det.inspect(r).len();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{:.2} us/request ({n})", best * 1e6 / reqs.len() as f64);
        return;
    }
    for path in &args {
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Some((id, _label, req)) = eval::parse_line(line) else { continue };
            println!("{id}\t{:?}", det.inspect(&req));
            println!("{id}s\t{:?}", small.inspect(&req));
        }
    }
}
