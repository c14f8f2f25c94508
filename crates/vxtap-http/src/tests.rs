use proptest::prelude::*;

use super::*;

const A: Peer = Peer::A;
const B: Peer = Peer::B;

fn new(hint: Option<Peer>) -> Conversation {
    Conversation::new(HttpConfig::default(), hint)
}

fn drain(c: &mut Conversation) -> Vec<Output> {
    let mut out = Vec::new();
    c.drain(&mut out);
    out
}

fn txs(out: &[Output]) -> Vec<&Transaction> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transaction(t) => Some(t),
            Output::Anomaly(_) => None,
        })
        .collect()
}

fn anomalies(out: &[Output]) -> Vec<Anomaly> {
    out.iter()
        .filter_map(|o| match o {
            Output::Anomaly(a) => Some(*a),
            Output::Transaction(_) => None,
        })
        .collect()
}

fn header<'a>(hs: &'a [Header], name: &str) -> Option<&'a [u8]> {
    hs.iter().find(|h| h.name.eq_ignore_ascii_case(name.as_bytes())).map(|h| h.value.as_slice())
}

/// Client A (hinted), server B seen; whole client stream, whole server stream, finish.
fn run(client: &[u8], server: &[u8]) -> Vec<Output> {
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_data(A, client, 1);
    c.on_data(B, server, 2);
    c.finish(3);
    drain(&mut c)
}

/// Same, delivering `chunk` bytes at a time.
fn run_chunked(client: &[u8], server: &[u8], chunk: usize) -> Vec<Output> {
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    for p in client.chunks(chunk) {
        c.on_data(A, p, 1);
    }
    for p in server.chunks(chunk) {
        c.on_data(B, p, 2);
    }
    c.finish(3);
    drain(&mut c)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn simple_get_with_response() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"GET /x?y=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: t\r\n\r\n", 10);
    assert!(drain(&mut c).is_empty(), "waits for the response");
    c.on_data(B, b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop", 20);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    let r = &t[0].request;
    assert_eq!(t[0].client, A);
    assert_eq!(
        (r.method.as_slice(), r.target.as_slice(), r.protocol.as_slice()),
        (&b"GET"[..], &b"/x?y=1"[..], &b"HTTP/1.1"[..])
    );
    assert_eq!(r.headers.len(), 2);
    assert_eq!(r.headers[0], Header { name: b"Host".to_vec(), value: b"shop.example".to_vec() });
    assert_eq!((r.start_ts, r.end_ts), (10, 10));
    let resp = t[0].response.as_ref().unwrap();
    assert_eq!(
        (resp.status, resp.reason.as_slice(), resp.body_len, resp.end_ts),
        (404, &b"Not Found"[..], 3, 20)
    );
    assert_eq!(resp.protocol, b"HTTP/1.1");
    assert!(anomalies(&out).is_empty());
    c.finish(30);
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn pipelined_nine_requests_in_one_chunk() {
    let mut client = Vec::new();
    let mut server = Vec::new();
    for i in 0..9 {
        if i % 3 == 1 {
            client.extend_from_slice(
                format!("POST /p{i} HTTP/1.1\r\nContent-Length: 3\r\n\r\nb={i}").as_bytes(),
            );
        } else if i % 3 == 2 {
            client.extend_from_slice(
                format!("PUT /p{i} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nc{i}\r\n0\r\n\r\n")
                    .as_bytes(),
            );
        } else {
            client.extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        }
        server
            .extend_from_slice(format!("HTTP/1.1 {} OK\r\nContent-Length: 1\r\n\r\n{i}", 220 + i).as_bytes());
    }
    let out = run(&client, &server);
    assert!(anomalies(&out).is_empty(), "{out:?}");
    let t = txs(&out);
    assert_eq!(t.len(), 9);
    for (i, tx) in t.iter().enumerate() {
        assert_eq!(tx.request.target, format!("/p{i}").into_bytes());
        assert_eq!(tx.response.as_ref().unwrap().status, 220 + i as u16);
        match i % 3 {
            1 => assert_eq!(tx.request.body, format!("b={i}").into_bytes()),
            2 => assert_eq!(tx.request.body, format!("c{i}").into_bytes()),
            _ => assert!(tx.request.body.is_empty()),
        }
    }
}

#[test]
fn byte_at_a_time_equals_whole() {
    let client = b"\r\nPOST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\nX: y\n\nPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n";
    let server = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil close";
    let whole = run(client, server);
    assert_eq!(txs(&whole).len(), 3);
    assert_eq!(txs(&whole)[2].response.as_ref().unwrap().body_len, 11);
    for n in [1, 2, 3, 7, 64] {
        assert_eq!(run_chunked(client, server, n), whole, "chunk size {n}");
    }
}

#[test]
fn chunked_extensions_trailers_uppercase_leading_zeros() {
    let client = b"POST /u HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0005;name=val;x\r\nhello\r\n00A \r\n0123456789\r\n000;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
    let out = run(client, b"");
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].request.body, b"hello0123456789");
    assert_eq!(t[0].request.body_len, 15);
    assert!(!t[0].request.gap);
    assert_eq!(t[1].request.target, b"/next");
    assert!(anomalies(&out).is_empty());
}

#[test]
fn transfer_encoding_wins_over_content_length() {
    let client = b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
    let out = run(client, b"");
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].request.body, b"body");
    assert_eq!(t[1].request.target, b"/2");
}

#[test]
fn conflicting_content_length_is_malformed() {
    let client =
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcGET /ok HTTP/1.1\r\n\r\n";
    let out = run(client, b"");
    assert_eq!(anomalies(&out), vec![Anomaly::MalformedRequest]);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].request.target, b"/ok");
    let same = run(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", b"");
    assert_eq!(txs(&same)[0].request.body, b"abc");
}

#[test]
fn expect_100_continue() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", 1);
    c.on_data(B, b"HTTP/1.1 100 Continue\r\n\r\n", 2);
    c.on_data(A, b"da", 3);
    c.on_data(A, b"ta", 4);
    assert!(txs(&drain(&mut c)).is_empty());
    c.on_data(B, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 5);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].request.body, b"data");
    assert_eq!((t[0].request.start_ts, t[0].request.end_ts), (1, 4));
    assert_eq!(t[0].response.as_ref().unwrap().status, 201);
}

#[test]
fn head_response_has_no_body() {
    let client = b"HEAD /big HTTP/1.1\r\n\r\nGET /small HTTP/1.1\r\n\r\n";
    let server =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let out = run(client, server);
    assert!(anomalies(&out).is_empty(), "{out:?}");
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].response.as_ref().unwrap().body_len, 0);
    assert_eq!(header(&t[0].response.as_ref().unwrap().headers, "content-length"), Some(&b"5000"[..]));
    assert_eq!(t[1].response.as_ref().unwrap().body_len, 2);
}

#[test]
fn status_204_and_304_have_no_body() {
    let client = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
    let server = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
    let out = run(client, server);
    assert!(anomalies(&out).is_empty(), "{out:?}");
    let st: Vec<u16> = txs(&out).iter().map(|t| t.response.as_ref().unwrap().status).collect();
    assert_eq!(st, vec![204, 304, 200]);
}

#[test]
fn upgrade_101_stops_parsing() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 1);
    c.on_data(B, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", 2);
    c.on_data(A, b"\x81\x85abcdGET / HTTP/1.1\r\n\r\n", 3);
    c.on_data(B, b"HTTP/1.1 200 OK\r\n\r\n", 4);
    c.finish(5);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].response.as_ref().unwrap().status, 101);
    assert_eq!(anomalies(&out), vec![Anomaly::Upgraded]);
    assert!(matches!(out[0], Output::Transaction(_)), "transaction before the anomaly");
}

#[test]
fn websocket_frames_before_101_arrives() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(
        A,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n\x81\x85abcd",
        1,
    );
    c.on_data(B, b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 2);
    c.finish(3);
    let out = drain(&mut c);
    assert_eq!(txs(&out)[0].response.as_ref().unwrap().status, 101);
    assert_eq!(anomalies(&out), vec![Anomaly::Upgraded]);
}

#[test]
fn upgrade_refused_continues() {
    let client =
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
    let server = b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let out = run(client, server);
    assert!(anomalies(&out).is_empty());
    assert_eq!(txs(&out).len(), 2);
}

#[test]
fn connect_tunnel() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 1);
    c.on_data(B, b"HTTP/1.1 200 Connection established\r\n\r\n", 2);
    c.on_data(A, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 3);
    c.on_data(B, b"\x16\x03\x03\x00\x5a\x02", 4);
    c.finish(5);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].request.target, b"example.com:443");
    assert_eq!(t[0].response.as_ref().unwrap().status, 200);
    assert_eq!(anomalies(&out), vec![Anomaly::Upgraded]);

    // client TLS arrives before the 200 is seen
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"CONNECT example.com:443 HTTP/1.1\r\n\r\n\x16\x03\x01\x02\x00", 1);
    c.on_data(B, b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03", 2);
    c.finish(5);
    let out = drain(&mut c);
    assert_eq!(txs(&out)[0].response.as_ref().unwrap().status, 200);
    assert_eq!(anomalies(&out), vec![Anomaly::Upgraded]);

    // CONNECT refused: HTTP goes on
    let out = run(
        b"CONNECT x:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(anomalies(&out).is_empty());
    assert_eq!(txs(&out).len(), 2);
}

#[test]
fn a_server_that_answered_elsewhere_is_waited_for_before_its_first_packet() {
    let mut c = new(Some(A));
    c.expect_answers_from(B);
    c.on_packet(A);
    c.on_data(A, b"GET /1 HTTP/1.1\r\n\r\n", 1);
    assert!(drain(&mut c).is_empty(), "the request waits for its answer");
    c.on_packet(B);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2);
    let out = drain(&mut c);
    assert_eq!(txs(&out)[0].response.as_ref().map(|r| r.status), Some(200));
    // one whose answer never comes goes out when the conversation ends
    let mut c = new(Some(A));
    c.expect_answers_from(B);
    c.on_data(A, b"GET /2 HTTP/1.1\r\n\r\n", 1);
    assert!(drain(&mut c).is_empty());
    c.finish(5);
    let out = drain(&mut c);
    assert!(txs(&out)[0].response.is_none());
    // the client's next request while no server packet came: the wait lapses
    let mut c = new(Some(A));
    c.expect_answers_from(B);
    c.on_data(A, b"GET /4 HTTP/1.1\r\n\r\n", 1);
    assert!(drain(&mut c).is_empty());
    c.on_data(A, b"GET /5 HTTP/1.1\r\n\r\n", 2);
    let out = drain(&mut c);
    assert_eq!(txs(&out).iter().map(|t| t.request.target.as_slice()).collect::<Vec<_>>(), [b"/4", b"/5"]);
    // a hint about the client changes nothing: its requests go out at once
    let mut c = new(Some(A));
    c.expect_answers_from(A);
    c.on_data(A, b"GET /3 HTTP/1.1\r\n\r\n", 1);
    assert_eq!(txs(&drain(&mut c)).len(), 1);
}

#[test]
fn one_direction_emits_immediately() {
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_data(A, b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nx", 1);
    let out = drain(&mut c);
    assert_eq!(txs(&out).len(), 1, "first emitted at once, second incomplete");
    c.on_data(A, b"y", 2);
    let out = drain(&mut c);
    assert_eq!(txs(&out)[0].request.body, b"xy");
    assert!(txs(&out)[0].response.is_none());
    // the server shows up: later requests wait again
    c.on_packet(B);
    c.on_data(A, b"GET /3 HTTP/1.1\r\n\r\n", 3);
    assert!(drain(&mut c).is_empty());
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].request.target, b"/3");
    assert_eq!(t[0].response.as_ref().unwrap().status, 200);
}

#[test]
fn server_seen_late() {
    let mut c = new(Some(A));
    c.on_data(A, b"GET /1 HTTP/1.1\r\n\r\n", 1);
    assert_eq!(txs(&drain(&mut c)).len(), 1);
    c.on_packet(B);
    c.on_data(B, b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n", 2); // answers /1, already emitted
    assert_eq!(drain(&mut c), vec![Output::Anomaly(Anomaly::UnexpectedResponse)]);
    c.on_data(A, b"GET /2 HTTP/1.1\r\n\r\n", 3);
    assert!(drain(&mut c).is_empty());
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4);
    let out = drain(&mut c);
    assert_eq!(txs(&out)[0].request.target, b"/2");
    assert_eq!(txs(&out)[0].response.as_ref().unwrap().status, 200);
}

#[test]
fn max_pending_emits_oldest() {
    let cfg = HttpConfig { max_pending: 2, ..HttpConfig::default() };
    let mut c = Conversation::new(cfg, Some(A));
    c.on_packet(B);
    for i in 0..5 {
        c.on_data(A, format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes(), i);
    }
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 3);
    assert!(t.iter().all(|t| t.response.is_none()));
    assert_eq!(t[0].request.target, b"/0");
    assert!(c.buffered_bytes() > 0);
    // responses for all five arrive: the first three are dropped, /3 and /4 get theirs
    for i in 0..5 {
        c.on_data(B, format!("HTTP/1.1 {} OK\r\nContent-Length: 0\r\n\r\n", 200 + i).as_bytes(), 10);
    }
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].request.target, b"/3");
    assert_eq!(t[0].response.as_ref().unwrap().status, 203);
    assert_eq!(t[1].response.as_ref().unwrap().status, 204);
}

#[test]
fn finish_emits_everything_in_order() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(
        A,
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        1,
    );
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 2);
    assert!(drain(&mut c).is_empty());
    c.finish(9);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 3);
    let r0 = t[0].response.as_ref().unwrap();
    assert!(r0.gap);
    assert_eq!((r0.body_len, r0.end_ts), (2, 9));
    assert!(t[1].response.is_none());
    assert!(t[2].request.gap);
    assert_eq!((t[2].request.body_len, t[2].request.end_ts), (3, 9));
    assert_eq!(c.buffered_bytes(), 0);
    c.on_data(A, GET, 10);
    c.finish(11);
    assert!(drain(&mut c).is_empty());
}

#[test]
fn gap_in_content_length_body() {
    let mut c = new(Some(A));
    c.on_data(A, b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 1);
    c.on_gap(A, 4, 2);
    c.on_data(A, b"hij", 3);
    c.on_data(A, b"GET /b HTTP/1.1\r\n\r\n", 4);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert!(t[0].request.gap);
    assert_eq!(t[0].request.body_len, 10);
    assert_eq!(t[0].request.body, b"abchij");
    assert!(!t[1].request.gap);
    assert_eq!(anomalies(&out), vec![Anomaly::BodyGap]);

    // a gap running past the end of the body into the next head
    let mut c = new(Some(A));
    c.on_data(A, b"POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nab", 1);
    c.on_gap(A, 10, 2);
    c.on_data(A, b"ost: x\r\n\r\nGET /c HTTP/1.1\r\n\r\n", 3);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].request.body_len, 4);
    assert_eq!(t[1].request.target, b"/c");
    assert_eq!(anomalies(&out), vec![Anomaly::BodyGap, Anomaly::RequestHeadLost]);
}

#[test]
fn gap_in_chunked_body_resyncs() {
    let mut c = new(Some(A));
    c.on_data(A, b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 1);
    c.on_gap(A, 100, 2);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert!(t[0].request.gap);
    assert_eq!(t[0].request.body, b"hel");
    c.on_data(A, b"lo world\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n", 3);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].request.target, b"/b");
    assert!(!t[0].request.gap);
}

#[test]
fn gap_in_head_resyncs_on_strict_request_line() {
    let mut c = new(Some(A));
    c.on_data(A, b"GET /a HTTP/1.1\r\nHost: x\r\nCook", 1);
    c.on_gap(A, 50, 2);
    c.on_data(A, b"ie: more\r\nReferer: GET / HTTP/1.1\r\nGET  /loose HTTP/1.1\r\n\r\nPOST /b HTTP/1.0\r\nContent-Length: 1\r\n\r\nz", 3);
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::RequestHeadLost]);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].request.target, b"/b");
    assert_eq!(t[0].request.body, b"z");

    // between requests, with the next request starting right after the gap
    let mut c = new(Some(A));
    c.on_data(A, GET, 1);
    c.on_gap(A, 30, 2);
    c.on_data(A, b"GET /after HTTP/1.1\r\n\r\n", 3);
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::RequestHeadLost]);
    assert_eq!(txs(&out).len(), 2);
    assert_eq!(txs(&out)[1].request.target, b"/after");
}

#[test]
fn server_gap_does_not_mispair() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 1);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Len", 2);
    c.on_gap(B, 40, 3);
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::ResponseHeadLost]);
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert!(t.iter().all(|t| t.response.is_none()));
    c.on_data(B, b"xx\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4);
    c.on_data(A, b"GET /3 HTTP/1.1\r\n\r\n", 5);
    c.on_data(B, b"HTTP/1.1 202 OK\r\nContent-Length: 0\r\n\r\n", 6);
    let out = drain(&mut c);
    // the response found by resync came before /3 was sent: it is dropped, /3 gets its own
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].response.as_ref().unwrap().status, 202);
}

#[test]
fn server_gap_in_bodies() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n", 1);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", 2);
    c.on_gap(B, 5, 3);
    c.on_data(B, b"cde", 4);
    c.on_data(B, b"HTTP/1.1 201 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 5);
    c.on_gap(B, 3, 6);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 3);
    let r = t[0].response.as_ref().unwrap();
    assert_eq!((r.status, r.body_len, r.gap), (200, 10, true));
    let r = t[1].response.as_ref().unwrap();
    assert_eq!((r.status, r.gap), (201, true));
    assert!(t[2].response.is_none(), "pairing after a chunked gap is uncertain");
    assert_eq!(anomalies(&out), vec![Anomaly::BodyGap, Anomaly::BodyGap]);
}

#[test]
fn body_looking_like_request_is_never_a_request() {
    let fake = b"GET / HTTP/1.1\r\n\r\n";
    let mut client = format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", fake.len() * 3).into_bytes();
    for _ in 0..3 {
        client.extend_from_slice(fake);
    }
    client.extend_from_slice(
        format!("POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", fake.len()).as_bytes(),
    );
    client.extend_from_slice(fake);
    client.extend_from_slice(b"\r\n0\r\n\r\n");
    for n in [1, 5, client.len()] {
        let out = run_chunked(&client, b"", n);
        let t = txs(&out);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].request.body.len(), fake.len() * 3);
        assert_eq!(t[1].request.body, fake);
        assert!(anomalies(&out).is_empty());
    }
}

#[test]
fn three_hundred_headers() {
    let mut client = b"GET /h HTTP/1.1\r\n".to_vec();
    for i in 0..300 {
        client.extend_from_slice(format!("X-H{i}: v{i}\r\n").as_bytes());
    }
    client.extend_from_slice(b"X-H0: dup\r\n\r\n");
    let out = run(&client, b"");
    let t = txs(&out);
    assert_eq!(t[0].request.headers.len(), 301);
    assert_eq!(t[0].request.headers[299].name, b"X-H299");
    assert_eq!(t[0].request.headers[300].value, b"dup");
}

#[test]
fn seventy_kib_head_byte_at_a_time() {
    let mut client = b"GET /big HTTP/1.1\r\nCookie: ".to_vec();
    client.extend(std::iter::repeat_n(b'c', 70 * 1024));
    client.extend_from_slice(b"\r\nX: 1\r\n\r\nGET /n HTTP/1.1\r\n\r\n");
    let whole = run(&client, b"");
    let t = txs(&whole);
    assert_eq!(t.len(), 2);
    assert_eq!(header(&t[0].request.headers, "cookie").unwrap().len(), 70 * 1024);
    assert_eq!(run_chunked(&client, b"", 1), whole);
}

#[test]
fn head_too_large() {
    let cfg = HttpConfig { max_head_bytes: 100, ..HttpConfig::default() };
    let mut c = Conversation::new(cfg, Some(A));
    let mut client = b"GET /big HTTP/1.1\r\n".to_vec();
    for i in 0..20 {
        client.extend_from_slice(format!("X-{i}: 0123456789\r\n").as_bytes());
    }
    client.extend_from_slice(b"\r\n");
    // While the oversized head streams in, no more than about the limit is held (and the room for the
    // anomaly reported, not drained yet).
    let bound = 256 + 4 * std::mem::size_of::<Output>();
    for p in client.chunks(3) {
        c.on_data(A, p, 1);
        assert!(c.buffered_bytes() <= bound, "{}", c.buffered_bytes());
    }
    c.on_data(A, b"GET /ok HTTP/1.1\r\n\r\n", 1);
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::HeadTooLarge]);
    assert_eq!(txs(&out).len(), 1);
    assert_eq!(txs(&out)[0].request.target, b"/ok");
}

#[test]
fn body_limit_truncates() {
    let cfg = HttpConfig { body_limit: 4, ..HttpConfig::default() };
    let mut c = Conversation::new(cfg, Some(A));
    c.on_data(
        A,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
        1,
    );
    c.on_data(A, b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nwxyz", 1);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(
        (t[0].request.body.as_slice(), t[0].request.body_len, t[0].request.body_truncated),
        (&b"abcd"[..], 6, true)
    );
    assert_eq!(
        (t[1].request.body.as_slice(), t[1].request.body_len, t[1].request.body_truncated),
        (&b"wxyz"[..], 4, false)
    );
}

#[test]
fn non_utf8_bytes_kept() {
    let out = run(b"GET /caf\xe9?q=\xff\x80 HTTP/1.1\r\nX-Name: \xc3\x28 raw \xfe\r\n\r\n", b"");
    let t = txs(&out);
    assert_eq!(t[0].request.target, b"/caf\xe9?q=\xff\x80");
    assert_eq!(t[0].request.headers[0].value, b"\xc3\x28 raw \xfe");
}

#[test]
fn bare_lf_line_ends() {
    let out = run(
        b"\n\nPOST /lf HTTP/1.1\nHost: a\nContent-Length: 2\n\nhiGET /2 HTTP/1.1\n\n",
        b"HTTP/1.1 200 OK\nContent-Length: 1\n\nxHTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n1\ny\n0\n\n",
    );
    assert!(anomalies(&out).is_empty(), "{out:?}");
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].request.body, b"hi");
    assert_eq!(t[1].response.as_ref().unwrap().body_len, 1);
}

#[test]
fn http10_without_host_and_read_until_close() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"GET /old HTTP/1.0\r\n\r\n", 1);
    c.on_data(B, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome", 2);
    c.on_data(B, b" body", 3);
    assert!(drain(&mut c).is_empty());
    c.on_end(B, 4);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t[0].request.protocol, b"HTTP/1.0");
    assert!(t[0].request.headers.is_empty());
    let r = t[0].response.as_ref().unwrap();
    assert_eq!((r.body_len, r.end_ts, r.gap), (9, 4, false));
}

#[test]
fn method_and_target_forms() {
    let client = b"PURGE /a HTTP/1.1\r\n\r\nPROPFIND /d HTTP/1.1\r\n\r\nM-SEARCH * HTTP/1.1\r\n\r\nget http://x.example/p?q HTTP/1.1\r\n\r\nOPTIONS * HTTP/1.1\r\n\r\n";
    let out = run(client, b"");
    let got: Vec<(Vec<u8>, Vec<u8>)> =
        txs(&out).iter().map(|t| (t.request.method.clone(), t.request.target.clone())).collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = [
        ("PURGE", "/a"),
        ("PROPFIND", "/d"),
        ("M-SEARCH", "*"),
        ("get", "http://x.example/p?q"),
        ("OPTIONS", "*"),
    ]
    .iter()
    .map(|(m, t)| (m.as_bytes().to_vec(), t.as_bytes().to_vec()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn obs_fold_joined() {
    let out = run(b"GET / HTTP/1.1\r\nX-Long: a\r\n  b\r\n\tc\r\nY: z\r\n\r\n", b"");
    let hs = &txs(&out)[0].request.headers;
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[0].value, b"a b c");
}

#[test]
fn http09_is_not_a_request() {
    let out = run(b"GET /\r\n\r\n", b"");
    assert!(txs(&out).is_empty());
    assert_eq!(anomalies(&out), vec![Anomaly::NotHttp(NotHttpKind::Unknown)]);
    let out = run(b"GET / HTTP/1.1\r\n\r\nGET /\r\n\r\nGET /x HTTP/1.1\r\n\r\n", b"");
    assert_eq!(anomalies(&out), vec![Anomaly::MalformedRequest]);
    assert_eq!(txs(&out).len(), 2);
}

#[test]
fn tls_and_http2_detection() {
    for hint in [Some(A), None] {
        let mut c = new(hint);
        c.on_data(A, b"\x16", 1);
        c.on_data(A, b"\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\nGET / HTTP/1.1\r\n\r\n", 1);
        c.on_data(B, b"\x16\x03\x03\x00\x31\x02\x00", 2);
        c.finish(3);
        let out = drain(&mut c);
        assert_eq!(out, vec![Output::Anomaly(Anomaly::NotHttp(NotHttpKind::Tls))]);
    }
    let mut c = new(None);
    c.on_data(A, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", 1);
    c.finish(2);
    assert_eq!(drain(&mut c), vec![Output::Anomaly(Anomaly::NotHttp(NotHttpKind::Http2))]);
}

#[test]
fn garbage_at_start_reported_once_then_resync() {
    let mut c = new(None);
    c.on_data(A, b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 binary\nmore noise here\r\n", 1);
    c.on_data(B, b"\x00\x00garbage\r\n", 1);
    c.on_data(A, b"\x7f\x45\nGET /real HTTP/1.1\r\nHost: h\r\n\r\n", 2);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3);
    c.finish(4);
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::NotHttp(NotHttpKind::Unknown)]);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].client, A);
    assert_eq!(t[0].request.target, b"/real");
    assert_eq!(t[0].response.as_ref().unwrap().status, 200);
}

#[test]
fn roles_found_from_data() {
    // B speaks first with a request: B is the client
    let mut c = new(None);
    c.on_packet(A);
    c.on_data(B, b"GET /fromb HTTP/1.1\r\n\r\n", 1);
    assert_eq!(c.client(), Some(B));
    c.on_data(A, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2);
    let out = drain(&mut c);
    assert_eq!(txs(&out)[0].client, B);
    assert_eq!(txs(&out)[0].response.as_ref().unwrap().status, 200);

    // A's response bytes arrive first, one byte at a time: A is the server
    let mut c = new(None);
    for b in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" {
        c.on_data(A, &[*b], 1);
    }
    assert_eq!(c.client(), Some(B));
    c.on_data(B, b"GET /x HTTP/1.1\r\n\r\n", 2);
    c.finish(3);
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::UnexpectedResponse]);
    assert_eq!(txs(&out)[0].client, B);

    // partial first lines on both sides before the decision
    let mut c = new(None);
    c.on_packet(A);
    c.on_packet(B);
    c.on_data(B, b"HTTP/1.", 1);
    c.on_data(A, b"GE", 1);
    c.on_data(A, b"T / HTTP/1.1\r\n\r\n", 2);
    c.on_data(B, b"1 204 No Content\r\n\r\n", 3);
    let out = drain(&mut c);
    assert!(anomalies(&out).is_empty(), "{out:?}");
    assert_eq!(txs(&out)[0].response.as_ref().unwrap().status, 204);
}

#[test]
fn client_end_inside_head_and_body() {
    let mut c = new(Some(A));
    c.on_data(A, b"GET / HTTP/1.1\r\nHo", 1);
    c.on_end(A, 2);
    assert_eq!(anomalies(&drain(&mut c)), vec![Anomaly::RequestIncomplete]);
    let mut c = new(Some(A));
    c.on_data(A, b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab", 1);
    c.on_end(A, 2);
    let out = drain(&mut c);
    assert!(txs(&out)[0].request.gap);
}

#[test]
fn response_before_request_is_unexpected() {
    let mut c = new(Some(A));
    c.on_data(B, OK, 1);
    c.on_data(A, GET, 2);
    c.finish(3);
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::UnexpectedResponse]);
    assert!(txs(&out)[0].response.is_none());
}

#[test]
fn malformed_response_resyncs() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"GET /1 HTTP/1.1\r\n\r\n", 1);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\nbody\r\n", 2);
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::MalformedResponse]);
    assert!(txs(&out)[0].response.is_none());
    c.on_data(A, b"GET /2 HTTP/1.1\r\n\r\n", 3);
    c.on_data(B, OK, 4);
    let out = drain(&mut c);
    assert_eq!(txs(&out)[0].response.as_ref().unwrap().status, 200);
}

#[test]
fn after_lost_framing_a_status_line_glued_to_a_body_is_found_at_its_segment() {
    // As a generated lossy capture had it: the response stream lost its framing (here a server
    // that sent more body bytes than its Content-Length said), and the next answer, in a segment
    // of its own, followed the last body bytes with no line end between them (JSON bodies end
    // without one). Skipping to the end of the line skipped that status line too.
    let (r1, r2) = (&b"GET /1 HTTP/1.1\r\n\r\n"[..], &b"GET /2 HTTP/1.1\r\n\r\n"[..]);
    let (end1, end2) = (r1.len() as u64, (r1.len() + r2.len()) as u64);
    let first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}{\"more\":1}";
    let second = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_stream_data(A, r1, 1, 0, None);
    c.on_stream_data(B, first, 2, 0, Some(end1));
    c.on_stream_data(A, r2, 3, end1, None);
    c.on_stream_data(B, second, 4, first.len() as u64, Some(end2));
    c.finish(5);
    let out = drain(&mut c);
    assert_eq!(pairs(&out), [(b"/1".to_vec(), Some(200)), (b"/2".to_vec(), Some(404))], "{out:?}");
}

#[test]
fn after_lost_framing_a_status_line_inside_a_segment_of_body_text_is_not_believed() {
    // The head of /1's answer was lost, and its body quotes a status line after other text (a page
    // about HTTP). Within a segment of skipped bytes it is not taken for a response, which would
    // give /1 a status its server never sent: a true answer glued to a body without a line end
    // starts a segment of its own unless the client pipelines.
    let (r1, r2) = (&b"GET /1 HTTP/1.1\r\n\r\n"[..], &b"GET /2 HTTP/1.1\r\n\r\n"[..]);
    let (end1, end2) = (r1.len() as u64, (r1.len() + r2.len()) as u64);
    let lost_head = b"HTTP/1.1 200 OK\r\nContent-Length: 57\r\n\r\n".len() as u64;
    let body = b"See <pre>HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n</pre> here";
    let second = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_stream_data(A, r1, 1, 0, None);
    c.on_stream_gap(B, 0, lost_head, 2);
    c.on_stream_data(B, body, 3, lost_head, Some(end1));
    c.on_stream_data(A, r2, 4, end1, None);
    c.on_stream_data(B, second, 5, lost_head + body.len() as u64, Some(end2));
    c.finish(6);
    let out = drain(&mut c);
    assert_eq!(pairs(&out), [(b"/1".to_vec(), None), (b"/2".to_vec(), Some(404))], "{out:?}");
}

#[test]
fn buffered_bytes_tracks_heads_and_bodies() {
    let mut c = new(Some(A));
    c.on_packet(B);
    assert_eq!(c.buffered_bytes(), 0);
    c.on_data(A, b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", 1);
    let head = c.buffered_bytes();
    assert!(head > 0);
    c.on_data(A, &[b'x'; 50_000], 2);
    // A body reserves no more ahead of what arrived than it holds: the declared 100,000 come in two
    // exact steps, each charged as allocated.
    assert_eq!(c.buffered_bytes(), head + 50_000);
    c.on_data(A, &[b'x'; 50_000], 2);
    assert_eq!(c.buffered_bytes(), head + 100_000);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 3);
    assert!(c.buffered_bytes() >= 100_000, "not drained yet");
    drain(&mut c);
    // An idle keep-alive connection holds nothing: head buffers are not kept between messages.
    assert_eq!(c.buffered_bytes(), 0);
    c.on_data(A, b"GET / HTTP/1.1\r\nCookie: ", 4);
    c.on_data(A, &[b'c'; 100_000], 4);
    assert!(c.buffered_bytes() > 100_000);
    c.on_data(A, b"\r\n\r\n", 4);
    c.on_data(B, b"HTTP/1.1 204 No Content\r\n\r\n", 5);
    drain(&mut c);
    assert_eq!(c.buffered_bytes(), 0);
    c.finish(6);
    drain(&mut c);
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn anomaly_kinds_are_snake_case() {
    let all = [
        Anomaly::NotHttp(NotHttpKind::Tls),
        Anomaly::NotHttp(NotHttpKind::Http2),
        Anomaly::NotHttp(NotHttpKind::Unknown),
        Anomaly::RequestHeadLost,
        Anomaly::ResponseHeadLost,
        Anomaly::MalformedRequest,
        Anomaly::MalformedResponse,
        Anomaly::HeadTooLarge,
        Anomaly::Upgraded,
        Anomaly::BodyGap,
        Anomaly::RequestIncomplete,
        Anomaly::ResponseIncomplete,
        Anomaly::UnexpectedResponse,
    ];
    let mut kinds: Vec<&str> = all.iter().map(Anomaly::kind).collect();
    assert!(
        kinds.iter().all(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()))
    );
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), all.len());
    assert_eq!(Anomaly::BodyGap.to_string(), "body_gap");
}

#[test]
fn broken_chunk_framing_emits_with_gap() {
    let mut client = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n".to_vec();
    client.extend_from_slice(b"GET /b HTTP/1.1\r\n\r\n");
    let out = run(&client, b"");
    assert_eq!(anomalies(&out), vec![Anomaly::MalformedRequest]);
    let t = txs(&out);
    assert_eq!(t.len(), 2);
    assert!(t[0].request.gap);
    assert_eq!(t[0].request.body, b"abc");
    assert_eq!(t[1].request.target, b"/b");

    let cfg = HttpConfig { max_head_bytes: 64, ..HttpConfig::default() };
    let mut c = Conversation::new(cfg, Some(A));
    c.on_data(A, b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", 1);
    for _ in 0..10 {
        c.on_data(A, b"X-Trailer: 0123456789\r\n", 2);
    }
    let out = drain(&mut c);
    assert_eq!(anomalies(&out), vec![Anomaly::MalformedRequest]);
    assert!(txs(&out)[0].request.gap);
}

#[test]
fn request_transfer_encoding_without_chunked_is_malformed() {
    let out = run(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxxGET /n HTTP/1.1\r\n\r\n", b"");
    assert_eq!(anomalies(&out), vec![Anomaly::MalformedRequest]);
    assert_eq!(txs(&out).len(), 1);
    assert_eq!(txs(&out)[0].request.target, b"/n");
}

#[test]
fn interim_responses_skipped() {
    let out = run(
        GET,
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(anomalies(&out).is_empty());
    let r = txs(&out)[0].response.clone().unwrap();
    assert_eq!((r.status, r.headers.len()), (200, 1));
}

#[test]
fn server_end_inside_body_marks_gap() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, GET, 1);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 2);
    c.on_end(B, 3);
    let out = drain(&mut c);
    let r = txs(&out)[0].response.clone().unwrap();
    assert_eq!((r.body_len, r.gap, r.end_ts), (3, true, 3));
    // the server is gone: later requests are emitted at once
    c.on_data(A, GET, 4);
    assert_eq!(txs(&drain(&mut c)).len(), 1);
}

#[test]
fn long_head_byte_at_a_time_is_linear() {
    // 512 KiB of headers delivered one byte per call: must not rescan the buffer
    let mut client = b"GET /l HTTP/1.1\r\n".to_vec();
    while client.len() < 512 * 1024 {
        client.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    client.extend_from_slice(b"\r\n");
    let start = std::time::Instant::now();
    let out = run_chunked(&client, b"", 1);
    assert_eq!(txs(&out).len(), 1);
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

// ---- property tests ----

#[derive(Clone, Debug)]
enum ReqBody {
    None,
    Length(Vec<u8>),
    Chunked(Vec<u8>, Vec<usize>),
}

#[derive(Clone, Debug)]
struct Msg {
    method: &'static str,
    path: String,
    body: ReqBody,
    status: u16,
    continue_first: bool,
    resp_len: usize,
    resp_chunked: bool,
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        Just(b"\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n".to_vec()),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    let req_body = prop_oneof![
        Just(ReqBody::None),
        body_bytes().prop_map(ReqBody::Length),
        (body_bytes(), proptest::collection::vec(1usize..8, 1..6)).prop_map(|(b, c)| ReqBody::Chunked(b, c)),
    ];
    (
        prop::sample::select(vec!["GET", "POST", "HEAD", "PURGE", "m-search", "OPTIONS"]),
        "[a-z0-9/._~%-]{0,20}",
        req_body,
        prop::sample::select(vec![200u16, 201, 204, 304, 404, 500]),
        any::<bool>(),
        0usize..30,
        any::<bool>(),
    )
        .prop_map(|(method, path, body, status, continue_first, resp_len, resp_chunked)| Msg {
            method,
            path: format!("/{path}"),
            body,
            status,
            continue_first,
            resp_len,
            resp_chunked,
        })
}

fn encode(msgs: &[Msg]) -> (Vec<u8>, Vec<u8>) {
    let mut client = Vec::new();
    let mut server = Vec::new();
    for m in msgs {
        client.extend_from_slice(
            format!("{} {} HTTP/1.1\r\nHost: example\r\nX-A: 1\r\n", m.method, m.path).as_bytes(),
        );
        match &m.body {
            ReqBody::None => client.extend_from_slice(b"\r\n"),
            ReqBody::Length(b) => {
                client.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
                client.extend_from_slice(b);
            }
            ReqBody::Chunked(b, sizes) => {
                client.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = b.as_slice();
                let mut k = 0;
                while !rest.is_empty() {
                    let n = sizes[k % sizes.len()].min(rest.len());
                    k += 1;
                    client.extend_from_slice(format!("{n:0width$X};e={k}\r\n", width = 1 + k % 3).as_bytes());
                    client.extend_from_slice(&rest[..n]);
                    client.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                client.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
            }
        }
        if m.continue_first {
            server.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        server.extend_from_slice(format!("HTTP/1.1 {} X\r\n", m.status).as_bytes());
        let has_body = m.method != "HEAD" && m.status != 204 && m.status != 304;
        let body = vec![b'r'; m.resp_len];
        if m.resp_chunked {
            server.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            if has_body {
                if !body.is_empty() {
                    server.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                    server.extend_from_slice(&body);
                    server.extend_from_slice(b"\r\n");
                }
                server.extend_from_slice(b"0\r\n\r\n");
            }
        } else {
            server.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            if has_body {
                server.extend_from_slice(&body);
            }
        }
    }
    (client, server)
}

fn feed_split(client: &[u8], server: &[u8], cuts: &[usize], one_direction: bool) -> Vec<Output> {
    let mut c = new(if one_direction { None } else { Some(A) });
    let mut k = 0;
    c.on_packet(A);
    if !one_direction {
        c.on_packet(B);
    }
    for (peer, stream) in [(A, client), (B, server)] {
        if one_direction && peer == B {
            continue;
        }
        let mut rest = stream;
        while !rest.is_empty() {
            let n = cuts.get(k).copied().unwrap_or(rest.len()).clamp(1, rest.len());
            k += 1;
            c.on_data(peer, &rest[..n], 7);
            rest = &rest[n..];
        }
    }
    c.finish(8);
    drain(&mut c)
}

proptest! {
    #[test]
    fn has_ctl_finds_what_the_byte_loop_finds(bytes in proptest::collection::vec(
        prop_oneof![any::<u8>(), 0x1du8..0x23, 0x7du8..0x82], 0..40)) {
        let expected = bytes.iter().any(|&b| b < 0x20 || b == 0x7f);
        prop_assert_eq!(crate::head::has_ctl(&bytes), expected);
    }

    #[test]
    fn any_split_gives_identical_output(
        msgs in proptest::collection::vec(msg(), 1..8),
        cuts in proptest::collection::vec(1usize..24, 0..200),
        one_direction in any::<bool>(),
    ) {
        let (client, server) = encode(&msgs);
        let whole = feed_split(&client, &server, &[], one_direction);
        let split = feed_split(&client, &server, &cuts, one_direction);
        prop_assert_eq!(&split, &whole);
        let bytes: Vec<usize> = vec![1; client.len() + server.len()];
        prop_assert_eq!(&feed_split(&client, &server, &bytes, one_direction), &whole);
        // and the output is the right one
        prop_assert!(anomalies(&whole).is_empty(), "{:?}", anomalies(&whole));
        let t = txs(&whole);
        prop_assert_eq!(t.len(), msgs.len());
        for (tx, m) in t.iter().zip(&msgs) {
            prop_assert_eq!(&tx.request.method, &m.method.as_bytes().to_vec());
            prop_assert_eq!(&tx.request.target, &m.path.as_bytes().to_vec());
            let want: &[u8] = match &m.body { ReqBody::None => b"", ReqBody::Length(b) | ReqBody::Chunked(b, _) => b };
            prop_assert_eq!(tx.request.body.as_slice(), want);
            if one_direction {
                prop_assert!(tx.response.is_none());
            } else {
                prop_assert_eq!(tx.response.as_ref().map(|r| r.status), Some(m.status));
            }
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(
        events in proptest::collection::vec((any::<bool>(), 0u8..6, proptest::collection::vec(any::<u8>(), 0..64)), 0..60),
        hint in prop::option::of(prop_oneof![Just(A), Just(B)]),
    ) {
        let cfg = HttpConfig { body_limit: 16, max_head_bytes: 256, max_pending: 4 };
        let mut c = Conversation::new(cfg, hint);
        let mut out = Vec::new();
        let prefixes: [&[u8]; 4] = [b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"Transfer-Encoding: chunked\r\n\r\n", b"\r\n"];
        for (ts, (dir_a, op, data)) in events.iter().enumerate() {
            let peer = if *dir_a { A } else { B };
            let ts = ts as u64;
            match op {
                0 => c.on_gap(peer, data.len() as u64 + 1, ts),
                1 => c.on_end(peer, ts),
                2 => c.on_packet(peer),
                3 => c.on_data(peer, prefixes[data.len() % 4], ts),
                _ => c.on_data(peer, data, ts),
            }
            prop_assert!(c.buffered_bytes() <= 2 * 256 + 5 * (256 + 16) + 4096, "{}", c.buffered_bytes());
            c.drain(&mut out);
        }
        c.finish(1000);
        c.drain(&mut out);
        prop_assert_eq!(c.buffered_bytes(), 0);
    }
}

#[test]
fn resync_takes_the_known_method_that_ends_junk_before_a_request() {
    // The lost head's one-byte body ("C") runs straight into the next request line.
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_data(A, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Le", 1);
    c.on_gap(A, 20, 2);
    c.on_data(A, b"CGET /next HTTP/1.1\r\nHost: x\r\n\r\n", 3);
    c.finish(4);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1, "{out:?}");
    assert_eq!(t[0].request.method, b"GET");
    assert_eq!(t[0].request.target, b"/next");
}

#[test]
fn resync_ignores_unknown_methods_that_could_be_body_bytes() {
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_gap(A, 10, 1);
    c.on_data(A, b"xx\nXYZZY /not-a-request HTTP/1.1\r\n\r\nGET /real HTTP/1.1\r\n\r\n", 2);
    c.finish(3);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1, "{out:?}");
    assert_eq!(t[0].request.target, b"/real");
}

#[test]
fn resync_tries_each_new_segment_after_a_body_of_unknown_length() {
    // The head (and so the body length) was lost; the body has no line end; the next request comes
    // in its own segment.
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_gap(A, 300, 1);
    c.on_data(A, b"{\"name\":\"value\",\"n\":1}", 2);
    c.on_data(A, b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n", 3);
    c.finish(4);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1, "{out:?}");
    assert_eq!(t[0].request.target, b"/after");
}

#[test]
fn proxy_protocol_v1_is_stripped_and_reported_even_byte_by_byte() {
    let stream = b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 80\r\nGET /p HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut c = new(Some(A));
    c.on_packet(A);
    for b in stream.chunks(1) {
        c.on_data(A, b, 1);
    }
    let mut out = drain(&mut c);
    // Between messages the connection holds only the addresses, charged to the memcap.
    assert_eq!(c.buffered_bytes(), size_of::<ProxyHeader>());
    c.finish(2);
    out.extend(drain(&mut c));
    let t = txs(&out);
    assert_eq!(t.len(), 1, "{out:?}");
    assert_eq!(t[0].request.target, b"/p");
    let proxy = t[0].proxy.expect("proxy header kept");
    assert_eq!(proxy.source, "198.51.100.7:40000".parse().unwrap());
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn proxy_protocol_v2_before_a_request_without_hint() {
    let mut stream = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    stream.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 9, 10, 0, 0, 1, 0x9c, 0x40, 0, 80]);
    stream.extend_from_slice(b"POST /v2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
    let mut c = new(None);
    c.on_data(A, &stream, 1);
    c.finish(2);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1, "{out:?}");
    assert_eq!(t[0].request.body, b"ok");
    assert_eq!(t[0].proxy.map(|p| p.source), Some("203.0.113.9:40000".parse().unwrap()));
}

#[test]
fn a_short_first_segment_that_is_not_proxy_is_parsed_normally() {
    let out = run_chunked(b"PUT /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nz", b"HTTP/1.1 200 OK\r\n\r\n", 2);
    let t = txs(&out);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].request.method, b"PUT");
    assert!(t[0].proxy.is_none());
}

#[test]
fn resync_finds_a_request_line_glued_to_the_end_of_a_body() {
    // The first head was lost, so the body's length is unknown; the next requests follow the body
    // bytes with no line break in between, in the same segment.
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_gap(A, 1460, 1);
    c.on_data(
        A,
        b"name=x\"}PUT /users/9/orders?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n{}{}PATCH /p HTTP/1.1\r\nHost: x\r\n\r\n",
        2,
    );
    c.finish(3);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 2, "{out:?}");
    assert_eq!((t[0].request.method.as_slice(), t[0].request.body.as_slice()), (&b"PUT"[..], &b"{}{}"[..]));
    assert_eq!(t[1].request.target, b"/p");
}

#[test]
fn a_response_that_overtakes_its_request_is_paired_when_the_request_comes() {
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    let request = b"POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nz";
    c.on_stream_data(
        B,
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        1,
        0,
        Some(request.len() as u64),
    );
    c.on_stream_data(A, request, 2, 0, None);
    c.finish(3);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1, "{out:?}");
    assert_eq!(t[0].response.as_ref().map(|r| r.status), Some(201));
    assert!(anomalies(&out).is_empty(), "{out:?}");
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn a_response_and_the_servers_fin_that_overtake_the_request_wait_for_it() {
    // As the lab's reordering relay delivered one connection: the response, the server's FIN, then
    // the request in two pieces; the server's end must not release the response unpaired.
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    let (head, rest) = (&b"POST /form HTTP/1.1\r\nHost: x\r\n"[..], &b"Content-Length: 3\r\n\r\na=1"[..]);
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    c.on_stream_data(B, response, 1, 0, Some((head.len() + rest.len()) as u64));
    c.on_end(B, 2);
    c.on_stream_data(A, head, 3, 0, None);
    c.on_stream_data(A, rest, 4, head.len() as u64, None);
    c.on_end(A, 5);
    c.finish(5);
    let out = drain(&mut c);
    let t = txs(&out);
    assert_eq!(t.len(), 1, "{out:?}");
    assert_eq!(t[0].request.target, b"/form");
    assert_eq!(t[0].response.as_ref().map(|r| r.status), Some(200));
    assert!(anomalies(&out).is_empty(), "{out:?}");
}

#[test]
fn responses_after_a_lost_request_are_paired_with_their_own_requests() {
    // As the lab's impaired relay delivered a keep-alive connection: the client's second request was
    // lost, and the server's answers to it and to the third request came while the third waited
    // behind the hole. Fed as they came, both found no request and every later request of the
    // connection went out without its status.
    let (req1, req2, req3) = (
        &b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"[..],
    );
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    let ends = ends_of(&[req1.to_vec(), req2.to_vec(), req3.to_vec()]);
    let (a1, a2, a3) = (answer("200 OK"), answer("404 Not Found"), answer("201 Created"));
    c.on_stream_data(A, req1, 1, 0, None);
    c.on_stream_data(B, &a1, 2, 0, Some(ends[0]));
    c.on_stream_data(B, &a2, 3, a1.len() as u64, Some(ends[1]));
    c.on_stream_data(B, &a3, 4, (a1.len() + a2.len()) as u64, Some(ends[2]));
    c.on_gap(A, req2.len() as u64, 5);
    c.on_stream_data(A, req3, 5, ends[1], None);
    c.finish(6);
    let out = drain(&mut c);
    let paired: Vec<(&[u8], Option<u16>)> = txs(&out)
        .iter()
        .map(|t| (t.request.target.as_slice(), t.response.as_ref().map(|r| r.status)))
        .collect();
    assert_eq!(paired, [(&b"/1"[..], Some(200)), (&b"/3"[..], Some(201))], "{out:?}");
    assert_eq!(anomalies(&out), [Anomaly::RequestHeadLost, Anomaly::UnexpectedResponse], "{out:?}");
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn a_response_is_paired_only_with_a_request_its_server_had_received() {
    // The server's SYN-ACK was lost: its first packet came after the first request, which went out
    // at once as from a one-direction mirror. That request's response, which acknowledges only
    // it, must not be taken for the second request's.
    let (req1, req2) =
        (&b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"[..], &b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    let (resp1, resp2) = (
        &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
        &b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"[..],
    );
    let (end1, end2) = (req1.len() as u64, (req1.len() + req2.len()) as u64);
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_stream_data(A, req1, 1, 0, None);
    c.on_packet(B);
    c.on_stream_data(A, req2, 2, end1, None);
    c.on_stream_data(B, resp1, 3, 0, Some(end1));
    c.on_stream_data(B, resp2, 4, resp1.len() as u64, Some(end2));
    c.finish(5);
    let out = drain(&mut c);
    let paired: Vec<(&[u8], Option<u16>)> = txs(&out)
        .iter()
        .map(|t| (t.request.target.as_slice(), t.response.as_ref().map(|r| r.status)))
        .collect();
    assert_eq!(paired, [(&b"/1"[..], None), (&b"/2"[..], Some(404))], "{out:?}");
    assert_eq!(anomalies(&out), [Anomaly::UnexpectedResponse], "{out:?}");
}

#[test]
fn after_lost_response_bytes_requests_the_server_had_not_received_keep_their_responses() {
    // The answer to /2 was lost while the client went on (it had the answer); the server stream's
    // hole kept /3 and /4 waiting. The next answer acknowledges /2 and /3: from a client that
    // waits for each answer, it is /3's, and /2's was the one lost. /4 keeps its own.
    let reqs: Vec<Vec<u8>> =
        (1..=4).map(|i| format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()).collect();
    let ends = ends_of(&reqs);
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    let mut offset = 0;
    for (r, ts) in reqs.iter().zip(1..) {
        c.on_stream_data(A, r, ts, offset, None);
        offset += r.len() as u64;
    }
    let (r1, r2, r3, r4) =
        (answer("200 OK"), answer("201 Created"), answer("202 Accepted"), answer("204 No Content"));
    c.on_stream_data(B, &r1, 5, 0, Some(ends[0]));
    c.on_gap(B, r2.len() as u64, 6);
    c.on_stream_data(B, &r3, 7, (r1.len() + r2.len()) as u64, Some(ends[2]));
    c.on_stream_data(B, &r4, 8, (r1.len() + r2.len() + r3.len()) as u64, Some(ends[3]));
    c.finish(9);
    let out = drain(&mut c);
    let paired: Vec<(&[u8], Option<u16>)> = txs(&out)
        .iter()
        .map(|t| (t.request.target.as_slice(), t.response.as_ref().map(|r| r.status)))
        .collect();
    assert_eq!(
        paired,
        [(&b"/1"[..], Some(200)), (b"/2", None), (b"/3", Some(202)), (b"/4", Some(204))],
        "{out:?}"
    );
}

/// Targets and statuses of the transactions in `out`.
fn pairs(out: &[Output]) -> Vec<(Vec<u8>, Option<u16>)> {
    txs(out).iter().map(|t| (t.request.target.clone(), t.response.as_ref().map(|r| r.status))).collect()
}

/// `GET /1` … `GET /n`, each a whole request.
fn gets(n: usize) -> Vec<Vec<u8>> {
    (1..=n).map(|i| format!("GET /{i} HTTP/1.1\r\n\r\n").into_bytes()).collect()
}

/// Where each of `reqs`, sent back to back from offset 0, ends in the client's stream.
fn ends_of(reqs: &[Vec<u8>]) -> Vec<u64> {
    reqs.iter()
        .scan(0, |end, r| {
            *end += r.len() as u64;
            Some(*end)
        })
        .collect()
}

/// A bodiless response with `status` (code and reason).
fn answer(status: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// Feeds bodiless responses with `statuses` from offset 0 on, each acknowledging the client's
/// stream up to `acked`, from capture time `ts` on.
fn answer_all(c: &mut Conversation, statuses: &[&str], ts: u64, acked: u64) {
    let mut offset = 0;
    for (status, ts) in statuses.iter().zip(ts..) {
        let answer = answer(status);
        c.on_stream_data(B, &answer, ts, offset, Some(acked));
        offset += answer.len() as u64;
    }
}

#[test]
fn after_a_lost_request_each_answer_waits_for_the_request_it_acknowledges() {
    // Requests sent each after the previous answer; /2 was lost. Its answer acknowledges only up
    // to /2's end, so it cannot be /3's; /3's own answer is.
    let (r1, r2, r3) =
        (&b"GET /1 HTTP/1.1\r\n\r\n"[..], &b"GET /2 HTTP/1.1\r\n\r\n"[..], &b"GET /3 HTTP/1.1\r\n\r\n"[..]);
    let (a1, a2, a3) = (answer("200 OK"), answer("404 Not Found"), answer("201 Created"));
    let (end1, end2, end3) =
        (r1.len() as u64, (r1.len() + r2.len()) as u64, (r1.len() + r2.len() + r3.len()) as u64);
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_stream_data(A, r1, 1, 0, None);
    c.on_stream_data(B, &a1, 2, 0, Some(end1));
    c.on_gap(A, r2.len() as u64, 3);
    c.on_stream_data(A, r3, 4, end2, None);
    c.on_stream_data(B, &a2, 5, a1.len() as u64, Some(end2));
    c.on_stream_data(B, &a3, 6, (a1.len() + a2.len()) as u64, Some(end3));
    c.finish(7);
    let out = drain(&mut c);
    assert_eq!(pairs(&out), [(b"/1".to_vec(), Some(200)), (b"/3".to_vec(), Some(201))], "{out:?}");
}

#[test]
fn after_a_lost_pipelined_request_no_answer_is_given_to_the_wrong_request() {
    // As a generated lossy capture had it: a client pipelined its requests and the segment with
    // the first was lost. Every answer acknowledges them all, so none can be told apart: the
    // requests go without status rather than each with the one before's.
    let reqs = gets(3);
    let total: u64 = reqs.iter().map(|r| r.len() as u64).sum();
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_gap(A, reqs[0].len() as u64, 1);
    c.on_stream_data(A, &[reqs[1].as_slice(), reqs[2].as_slice()].concat(), 2, reqs[0].len() as u64, None);
    answer_all(&mut c, &["200 OK", "404 Not Found", "201 Created"], 3, total);
    c.finish(6);
    let out = drain(&mut c);
    assert_eq!(pairs(&out), [(b"/2".to_vec(), None), (b"/3".to_vec(), None)], "{out:?}");
}

#[test]
fn a_gap_between_the_requests_of_a_waiting_client_costs_no_later_status() {
    // As the lab's truncating relay left a connection: the end of a body was cut at a request
    // boundary. Nothing shows whether a request was lost, but the client sends one request per
    // answer, so each answer still goes to its request.
    let reqs = gets(3);
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    let (mut client, mut server) = (0u64, 0u64);
    for (i, (r, status)) in reqs.iter().zip(["200 OK", "404 Not Found", "201 Created"]).enumerate() {
        let ts = 10 * i as u64;
        c.on_stream_data(A, r, ts, client, None);
        client += r.len() as u64;
        if i == 0 {
            c.on_gap(A, 100, ts + 1);
            client += 100;
        }
        let answer = answer(status);
        c.on_stream_data(B, &answer, ts + 2, server, Some(client));
        server += answer.len() as u64;
    }
    c.finish(40);
    let out = drain(&mut c);
    let want = [(b"/1".to_vec(), Some(200)), (b"/2".to_vec(), Some(404)), (b"/3".to_vec(), Some(201))];
    assert_eq!(pairs(&out), want, "{out:?}");
}

#[test]
fn an_answer_too_large_to_hold_for_its_request_is_not_replaced_by_the_next() {
    // The answer to /1 (100 KiB) arrives while /1 waits behind a hole in the client's stream: past
    // 64 KiB it must go unpaired. /1 then goes without an answer, and /2's answer is /2's alone.
    let (r1, r2) = (&b"GET /1 HTTP/1.1\r\n\r\n"[..], &b"GET /2 HTTP/1.1\r\n\r\n"[..]);
    let (end1, end2) = (r1.len() as u64, (r1.len() + r2.len()) as u64);
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n".to_vec();
    big.resize(big.len() + 102_400, b'x');
    let mut offset = 0;
    for (piece, ts) in big.chunks(16 << 10).zip(1..) {
        c.on_stream_data(B, piece, ts, offset, Some(end1));
        offset += piece.len() as u64;
    }
    c.on_stream_data(A, r1, 20, 0, None);
    c.on_stream_data(A, r2, 21, end1, None);
    c.on_stream_data(B, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 22, offset, Some(end2));
    c.finish(23);
    let out = drain(&mut c);
    assert_eq!(pairs(&out), [(b"/1".to_vec(), None), (b"/2".to_vec(), Some(404))], "{out:?}");
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn server_bytes_lost_while_answers_wait_for_their_requests_wait_with_them() {
    // As one lab connection had it: the client's stream waited behind a hole while the server's
    // answers came, and part of the server's stream was lost too. Applying that loss at once fed
    // the held answers before any request was parsed, and all 49 requests lost their status.
    let reqs = gets(3);
    let ends = ends_of(&reqs);
    let (a1, a2, a3) = (answer("200 OK"), answer("404 Not Found"), answer("201 Created"));
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_stream_data(B, &a1, 1, 0, Some(ends[0]));
    c.on_gap(B, a2.len() as u64, 2);
    c.on_stream_data(B, &a3, 3, (a1.len() + a2.len()) as u64, Some(ends[2]));
    let mut offset = 0;
    for (r, ts) in reqs.iter().zip(4..) {
        c.on_stream_data(A, r, ts, offset, None);
        offset += r.len() as u64;
    }
    c.finish(8);
    let out = drain(&mut c);
    let want = [(b"/1".to_vec(), Some(200)), (b"/2".to_vec(), None), (b"/3".to_vec(), Some(201))];
    assert_eq!(pairs(&out), want, "{out:?}");
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn after_lost_response_bytes_a_pipelining_client_gets_no_uncertain_answer() {
    // The three requests came in one segment; the answer to /2 was lost, and the next answer
    // acknowledges all three: it may be /2's or /3's, so both go without one.
    let reqs = gets(3);
    let total: u64 = reqs.iter().map(|r| r.len() as u64).sum();
    let (a1, a2, a3) = (answer("200 OK"), answer("404 Not Found"), answer("201 Created"));
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_stream_data(A, &reqs.concat(), 1, 0, None);
    c.on_stream_data(B, &a1, 2, 0, Some(total));
    c.on_gap(B, a2.len() as u64, 3);
    c.on_stream_data(B, &a3, 4, (a1.len() + a2.len()) as u64, Some(total));
    c.finish(5);
    let out = drain(&mut c);
    let want = [(b"/1".to_vec(), Some(200)), (b"/2".to_vec(), None), (b"/3".to_vec(), None)];
    assert_eq!(pairs(&out), want, "{out:?}");
}

#[test]
fn after_lost_response_bytes_an_answer_is_not_given_to_a_request_before_a_lost_one() {
    // As a generated capture had it: /2's answer was lost, then /3's head; the next answer
    // acknowledges /3 and is its answer, not /2's, though /2 is the last request parsed.
    let reqs = gets(3);
    let (l1, l2, l3) = (reqs[0].len() as u64, reqs[1].len() as u64, reqs[2].len() as u64);
    let (a1, a2, a3) = (answer("204 No Content"), answer("200 OK"), answer("400 Bad Request"));
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_stream_data(A, &reqs[0], 1, 0, None);
    c.on_stream_data(B, &a1, 2, 0, Some(l1));
    c.on_stream_data(A, &reqs[1], 3, l1, None);
    c.on_gap(A, l3, 4);
    c.on_gap(B, a2.len() as u64, 5);
    c.on_stream_data(B, &a3, 6, (a1.len() + a2.len()) as u64, Some(l1 + l2 + l3));
    c.finish(7);
    let out = drain(&mut c);
    assert_eq!(pairs(&out), [(b"/1".to_vec(), Some(204)), (b"/2".to_vec(), None)], "{out:?}");
}

#[test]
fn pipelined_requests_out_before_the_server_was_seen_lend_no_answer_to_later_ones() {
    // As a generated capture had it: the SYN-ACK was lost and a pipelining client's first
    // requests went out before the server's first packet; every answer acknowledges all requests,
    // so the first answers cannot be told from the later requests' own.
    let reqs = gets(3);
    let total: u64 = reqs.iter().map(|r| r.len() as u64).sum();
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_stream_data(A, &[reqs[0].as_slice(), reqs[1].as_slice()].concat(), 1, 0, None);
    c.on_packet(B);
    c.on_stream_data(A, &reqs[2], 2, total - reqs[2].len() as u64, None);
    answer_all(&mut c, &["304 Not Modified", "404 Not Found", "201 Created"], 3, total);
    c.finish(6);
    let out = drain(&mut c);
    assert_eq!(
        pairs(&out),
        [(b"/1".to_vec(), None), (b"/2".to_vec(), None), (b"/3".to_vec(), None)],
        "{out:?}"
    );
}

#[test]
fn after_a_gap_a_request_line_that_follows_a_blank_in_body_text_is_found() {
    // As the lab's truncating relay left a pipelined stream: the gap took a body's end, two requests
    // and a head's start; the request after the next text body starts after " \n ".
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_data(A, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\nsome text", 1);
    c.on_gap(A, 514, 2);
    c.on_data(
        A,
        b"HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nipsum \n amet \n POST /b?id=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        3,
    );
    c.finish(4);
    let out = drain(&mut c);
    let targets: Vec<&[u8]> = txs(&out).iter().map(|t| t.request.target.as_slice()).collect();
    assert_eq!(targets, [&b"/a"[..], b"/b?id=1"], "{out:?}");
}

#[test]
fn a_response_to_no_request_is_still_dropped_and_counted_at_the_end() {
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_stream_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 0, Some(40));
    c.finish(2);
    let out = drain(&mut c);
    assert!(txs(&out).is_empty());
    assert_eq!(anomalies(&out), vec![Anomaly::UnexpectedResponse]);
}

/// A connection picked up midstream (no handshake): `chunks` from the client, then the end; the
/// method and target of every request found.
fn midstream_requests(chunks: &[&[u8]]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = new(None);
    c.on_packet(A);
    for (ts, chunk) in chunks.iter().enumerate() {
        c.on_data(A, chunk, ts as u64 + 1);
    }
    c.finish(chunks.len() as u64 + 1);
    let out = drain(&mut c);
    txs(&out).iter().map(|t| (t.request.method.clone(), t.request.target.clone())).collect()
}

#[test]
fn a_midstream_start_inside_a_body_finds_the_glued_request_and_drops_the_body_tail() {
    // Picked up midstream (no handshake): the first bytes are the end of a body made of token
    // characters, glued to the next request line. Seen live when a mirror lost a connection's start.
    let requests = midstream_requests(&[
        b"eyJhbGciOiJIUzI1NiJ9-abc_DEFGET /images/1.png HTTP/1.1\r\nHost: h\r\n\r\n",
        b"m-search /x HTTP/1.1\r\nHost: h\r\n\r\n",
    ]);
    assert_eq!(
        requests,
        vec![(b"GET".to_vec(), b"/images/1.png".to_vec()), (b"m-search".to_vec(), b"/x".to_vec())]
    );
}

#[test]
fn a_midstream_start_stays_careful_when_the_response_direction_was_seen_first() {
    // Roles are settled by the server's status line before the client's first (glued) bytes arrive.
    let mut c = new(None);
    c.on_packet(B);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1);
    c.on_packet(A);
    c.on_data(A, b"LXUj-4m2PUyKKZoirt9MEidI0uV_qQvqSmuy7GET / HTTP/1.1\r\nHost: h\r\n\r\n", 2);
    c.on_data(B, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3);
    c.finish(4);
    let out = drain(&mut c);
    let methods: Vec<&[u8]> = txs(&out).iter().map(|t| t.request.method.as_slice()).collect();
    assert_eq!(methods, vec![&b"GET"[..]]);
}

#[test]
fn a_huge_declared_length_reserves_little_ahead_of_the_bytes_sent() {
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_data(A, b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 1);
    let head = c.buffered_bytes();
    c.on_data(A, b"x", 2);
    let held = c.buffered_bytes() - head;
    assert!((1..=16 << 10).contains(&held), "one byte sent, {held} bytes held");
}

#[test]
fn a_midstream_start_inside_a_json_body_finds_the_next_request() {
    let requests = midstream_requests(&[
        b"ame\":\"O'Brien\"}POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
        b"M-POST /x HTTP/1.1\r\nHost: h\r\n\r\n",
    ]);
    assert_eq!(requests, vec![(b"POST".to_vec(), b"/api".to_vec()), (b"M-POST".to_vec(), b"/x".to_vec())]);
    // A known extension method that ends in another known method stays whole at a midstream start.
    let requests = midstream_requests(&[b"M-POST /y HTTP/1.1\r\nHost: h\r\n\r\n"]);
    assert_eq!(requests, vec![(b"M-POST".to_vec(), b"/y".to_vec())]);
}

#[test]
fn an_answer_held_for_client_bytes_is_released_when_they_are_declared_lost() {
    // The first request was lost; its answer came first and waited for it. Once the client's
    // stream declares those bytes lost, the answer has no request to wait for: it is dropped at
    // once, not kept until the client sends again.
    let reqs = gets(2);
    let ends = ends_of(&reqs);
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_stream_data(B, &answer("404 Not Found"), 1, 0, Some(ends[0]));
    assert!(c.buffered_bytes() > 0, "the answer waits for its request");
    c.on_stream_gap(A, 0, ends[0], 2);
    assert_eq!(anomalies(&drain(&mut c)), [Anomaly::RequestHeadLost, Anomaly::UnexpectedResponse]);
    c.on_stream_data(A, &reqs[1], 3, ends[0], None);
    c.on_stream_data(B, &answer("200 OK"), 4, answer("404 Not Found").len() as u64, Some(ends[1]));
    c.finish(5);
    assert_eq!(pairs(&drain(&mut c)), [(b"/2".to_vec(), Some(200))]);
}

#[test]
fn a_request_sent_before_any_answer_arrived_marks_the_client_as_pipelining() {
    // As a generated lossy capture had it: the SYN-ACK was lost, so the first request went out at
    // once; the second came in a segment of its own, but acknowledging no more server bytes than
    // the first: the client had not waited for the first answer. That answer, which acknowledges
    // both requests, must not be given to the second.
    let reqs = gets(2);
    let ends = ends_of(&reqs);
    let (a1, a2) = (answer("201 Created"), answer("404 Not Found"));
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_stream_data(A, &reqs[0], 1, 0, Some(0));
    c.on_packet(B);
    c.on_stream_data(A, &reqs[1], 2, ends[0], Some(0));
    c.on_stream_data(B, &a1, 3, 0, Some(ends[1]));
    c.on_stream_data(B, &a2, 4, a1.len() as u64, Some(ends[1]));
    c.finish(5);
    assert_eq!(pairs(&drain(&mut c)), [(b"/1".to_vec(), None), (b"/2".to_vec(), None)]);
}

/// A conversation read from its handshake whose first of `n` GET requests the mirror lost; the
/// second was delivered. Returns it with the requests and their end offsets.
fn first_request_lost(n: usize) -> (Conversation, Vec<Vec<u8>>, Vec<u64>) {
    let reqs = gets(n);
    let ends = ends_of(&reqs);
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    c.on_stream_gap(A, 0, ends[0], 1);
    c.on_stream_data(A, &reqs[1], 2, ends[0], Some(0));
    (c, reqs, ends)
}

#[test]
fn after_lost_pipelined_requests_the_one_left_takes_no_earlier_answer() {
    // As generated lossy captures had it (six connections in three mixes): a client pipelined
    // its requests and the mirror lost all but the last. With one head, nothing in the client's
    // stream shows that it pipelined, and every answer acknowledges that last request. But a
    // client that waits for each answer had the lost request's before it sent the next one, and
    // the server's stream, read from its start, holds no answer before this one: it is the lost
    // request's, and the request left goes without status rather than with its status.
    let (mut c, _, ends) = first_request_lost(2);
    let (a1, a2) = (answer("201 Created"), answer("404 Not Found"));
    c.on_stream_data(B, &a1, 3, 0, Some(ends[1]));
    c.on_stream_data(B, &a2, 4, a1.len() as u64, Some(ends[1]));
    c.finish(5);
    assert_eq!(pairs(&drain(&mut c)), [(b"/2".to_vec(), None)]);
}

#[test]
fn only_the_first_answer_after_a_lost_request_can_be_taken_for_its_answer() {
    // The first answer after the loss came in a segment without an acknowledgment, so nothing
    // showed whether it was the lost request's; it went to /2. The next answer, which
    // acknowledges /3, is /3's own.
    let (mut c, reqs, ends) = first_request_lost(3);
    let (a2, a3) = (answer("404 Not Found"), answer("201 Created"));
    c.on_stream_data(B, &a2, 3, 0, None);
    c.on_stream_data(A, &reqs[2], 4, ends[1], Some(a2.len() as u64));
    c.on_stream_data(B, &a3, 5, a2.len() as u64, Some(ends[2]));
    c.finish(6);
    assert_eq!(pairs(&drain(&mut c)), [(b"/2".to_vec(), Some(404)), (b"/3".to_vec(), Some(201))]);
}

#[test]
fn an_answer_that_went_ahead_of_its_lost_request_is_not_looked_for_again() {
    // As a generated lossy capture had it: the answer to a request the mirror lost was too large
    // to hold until the loss was declared, and went ahead unpaired. The next request's own answer
    // must not be taken for the lost request's.
    let reqs = gets(2);
    let ends = ends_of(&reqs);
    let mut c = new(Some(A));
    c.on_packet(A);
    c.on_packet(B);
    let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n".to_vec();
    big.resize(big.len() + 102_400, b'x');
    let mut offset = 0;
    for (piece, ts) in big.chunks(16 << 10).zip(1..) {
        c.on_stream_data(B, piece, ts, offset, Some(ends[0]));
        offset += piece.len() as u64;
    }
    c.on_stream_gap(A, 0, ends[0], 20);
    c.on_stream_data(A, &reqs[1], 21, ends[0], Some(offset));
    c.on_stream_data(B, &answer("404 Not Found"), 22, offset, Some(ends[1]));
    c.finish(23);
    assert_eq!(pairs(&drain(&mut c)), [(b"/2".to_vec(), Some(404))]);
}

#[test]
fn a_lost_request_whose_answer_was_lost_too_takes_no_later_answer() {
    // As a generated lossy capture had it: the mirror lost a client's first request and its
    // answer, whichever loss is declared first; the client waits for each answer. The lost
    // answer may have been the first request's, so later requests keep their own answers. (When
    // the client's loss is declared first, the second request goes without status, as the lost
    // response bytes could be its answer for all the pairing knows.)
    let reqs = gets(3);
    let ends = ends_of(&reqs);
    let (a1, a2, a3) = (answer("200 OK"), answer("404 Not Found"), answer("201 Created"));
    let (end1, end2) = (a1.len() as u64, (a1.len() + a2.len()) as u64);
    for server_first in [true, false] {
        let mut c = new(Some(A));
        c.on_packet(A);
        c.on_packet(B);
        if server_first {
            c.on_stream_gap(B, 0, end1, 1);
        }
        c.on_stream_gap(A, 0, ends[0], 2);
        if !server_first {
            c.on_stream_gap(B, 0, end1, 3);
        }
        c.on_stream_data(A, &reqs[1], 4, ends[0], Some(end1));
        c.on_stream_data(B, &a2, 5, end1, Some(ends[1]));
        c.on_stream_data(A, &reqs[2], 6, ends[1], Some(end2));
        c.on_stream_data(B, &a3, 7, end2, Some(ends[2]));
        c.finish(8);
        let second = if server_first { Some(404) } else { None };
        let want = [(b"/2".to_vec(), second), (b"/3".to_vec(), Some(201))];
        assert_eq!(pairs(&drain(&mut c)), want, "server's loss first: {server_first}");
    }
}

#[test]
fn an_answer_that_overtakes_the_first_request_waits_when_the_handshake_named_the_client() {
    // As the lab's reordering relay delivered one connection: its SYN-ACK first, then the answer,
    // then the client's first packets. The handshake named the client, so its stream offsets
    // start at 0 and the answer, which acknowledges the request, waits for it.
    let request = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut c = new(Some(A));
    c.on_packet(B);
    c.on_stream_data(B, &answer("200 OK"), 1, 0, Some(request.len() as u64));
    c.on_packet(A);
    c.on_stream_data(A, request, 2, 0, Some(0));
    c.finish(3);
    assert_eq!(pairs(&drain(&mut c)), [(b"/first".to_vec(), Some(200))]);
}
