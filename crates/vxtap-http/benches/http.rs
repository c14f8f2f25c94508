//! HTTP parsing throughput: small GET requests with responses, and 64 KiB POST bodies, delivered in
//! 1448-byte chunks as reassembly hands them over.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vxtap_http::{Conversation, HttpConfig, Output, Peer};

fn conversation(requests: &[u8], responses: &[u8]) -> usize {
    let mut conv = Conversation::new(HttpConfig::default(), Some(Peer::A));
    conv.on_packet(Peer::B);
    let mut out = Vec::new();
    let mut count = 0;
    let (mut r, mut s) = (requests.chunks(1448), responses.chunks(1448));
    loop {
        let (a, b) = (r.next(), s.next());
        if a.is_none() && b.is_none() {
            break;
        }
        if let Some(a) = a {
            conv.on_data(Peer::A, a, 1);
        }
        if let Some(b) = b {
            conv.on_data(Peer::B, b, 1);
        }
        conv.drain(&mut out);
        count += out.iter().filter(|o| matches!(o, Output::Transaction(_))).count();
        out.clear();
    }
    conv.finish(2);
    conv.drain(&mut out);
    count + out.iter().filter(|o| matches!(o, Output::Transaction(_))).count()
}

fn bench(c: &mut Criterion) {
    let small_req = b"GET /api/v1/items/12345?sort=-created_at HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\nCookie: session=abcdef0123456789\r\n\r\n";
    let small_resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"id\":12345,\"name\":\"thing\"}";
    let n = 1000;
    let (reqs, resps) = (small_req.repeat(n), small_resp.repeat(n));
    let mut post = b"POST /upload HTTP/1.1\r\nHost: shop.example.com\r\nContent-Type: application/octet-stream\r\nContent-Length: 65536\r\n\r\n".to_vec();
    post.extend(std::iter::repeat_n(b'z', 65536));
    let big = 100;
    let (posts, post_resps) = (post.repeat(big), b"HTTP/1.1 204 No Content\r\n\r\n".repeat(big));

    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("small_requests", |b| b.iter(|| assert_eq!(conversation(&reqs, &resps), n)));
    group.throughput(Throughput::Elements(big as u64));
    group.bench_function("64KiB_posts", |b| b.iter(|| assert_eq!(conversation(&posts, &post_resps), big)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
