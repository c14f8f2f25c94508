//! The detector on arbitrary requests (target, headers and body from the input): no panic, and the
//! work stays bounded however hostile the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap_detect::Detector;
use vxtap_http::{Header, Request};

fuzz_target!(|data: &[u8]| {
    // Parts separated by 0xff: target, then header name/value pairs, the last part is the body.
    let mut parts = data.split(|&b| b == 0xff);
    let target = parts.next().unwrap_or_default().to_vec();
    let mut rest: Vec<&[u8]> = parts.collect();
    let body = rest.pop().unwrap_or_default().to_vec();
    let headers = rest
        .chunks(2)
        .map(|pair| Header { name: pair[0].to_vec(), value: pair.get(1).copied().unwrap_or_default().to_vec() })
        .collect();
    let request = Request {
        method: b"POST".to_vec(),
        target,
        protocol: b"HTTP/1.1".to_vec(),
        headers,
        body_len: body.len() as u64,
        body,
        ..Request::default()
    };
    let _ = Detector::builtin().inspect(&request);
});
