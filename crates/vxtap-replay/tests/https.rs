//! HTTPS to a local rustls server whose certificate is signed by a CA generated here (rcgen), given to
//! the client as its CA file; without that file the handshake fails and is counted as `connect`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Behaviour, Server, small_job};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use vxtap_replay::{ReplayClient, ReplayConfig};

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "vxtap test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params.distinguished_name.push(DnType::CommonName, "alb.internal");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
    Pki { ca_pem: ca_cert.pem(), server: Arc::new(server) }
}

#[test]
fn https_with_custom_ca() {
    let pki = pki();
    let server = Server::start_tls(Behaviour { varied: true, ..Behaviour::default() }, pki.server.clone());
    let dir = std::env::temp_dir().join(format!("vxtap-replay-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    // By IP (certificate IP SAN) and by name (SNI "localhost").
    let port = server.addr.port();
    let mut total = 0;
    for url in [format!("https://127.0.0.1:{port}"), format!("https://localhost:{port}/")] {
        let mut cfg = ReplayConfig::new(url.clone());
        cfg.ca_file = Some(ca_file.clone());
        cfg.concurrency = 8;
        let client = ReplayClient::start(cfg).unwrap();
        let sender = client.sender();
        for i in 0..500 {
            sender.submit_wait(small_job(i), Duration::from_secs(10)).unwrap();
        }
        let stats = client.finish(Duration::from_secs(30));
        assert_eq!(stats.sent, 500, "{url}: {stats:?}");
        assert!(stats.connections_opened <= 8, "{url}: keep-alive over TLS: {stats:?}");
        total += 500;
    }
    let records = server.records();
    assert_eq!(records.len(), total);
    assert!(records.iter().all(|r| r.header("X-Forwarded-For") == Some(b"10.0.0.7".as_slice())));

    // Without the CA: the certificate is not trusted, every request fails as `connect`.
    let client = ReplayClient::start(ReplayConfig::new(format!("https://127.0.0.1:{port}"))).unwrap();
    for i in 0..5 {
        client.sender().submit(small_job(i)).unwrap();
    }
    let stats = client.finish(Duration::from_secs(10));
    assert_eq!((stats.sent, stats.failed.connect), (0, 5), "{stats:?}");
    assert_eq!(server.records().len(), total);

    // A file without certificates is refused at start.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let mut cfg = ReplayConfig::new(format!("https://127.0.0.1:{port}"));
    cfg.ca_file = Some(empty);
    assert!(ReplayClient::start(cfg).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
