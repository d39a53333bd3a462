//! The fetcher against a local server: ETag and 304, error statuses, the size cap, a
//! stall, the bearer token, refused connections, TLS with a pinned CA, and files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::testserver::{Reply, TestServer, closed_port, ok, status};
use super::*;
use crate::fsutil::TestDir;

fn config(url: String) -> FetchConfig {
    FetchConfig {
        url,
        ca_file: None,
        token_file: None,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        max_size: 1000,
        keep_alive: Duration::from_secs(15),
    }
}

fn fetcher(url: String) -> Fetcher {
    Fetcher::new(config(url)).unwrap()
}

#[test]
fn an_unchanged_manifest_costs_a_304_after_the_first_fetch() {
    let server = TestServer::start(vec![
        ok(b"one", Some("\"v1\"")),
        Reply::Raw(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_vec()),
        ok(b"two", Some("\"v2\"")),
    ]);
    let mut f = fetcher(server.url("/m"));
    assert_eq!(f.fetch().unwrap(), Fetched::New(b"one".to_vec()));
    assert_eq!(f.fetch().unwrap(), Fetched::NotModified);
    assert_eq!(f.fetch().unwrap(), Fetched::New(b"two".to_vec()));
    let requests = server.requests();
    assert!(
        requests[0].starts_with("GET /m HTTP/1.1"),
        "{}",
        requests[0]
    );
    assert!(!requests[0].contains("if-none-match"), "{}", requests[0]);
    assert!(
        requests[1].contains("if-none-match: \"v1\""),
        "{}",
        requests[1]
    );
    assert!(
        requests[2].contains("if-none-match: \"v1\""),
        "{}",
        requests[2]
    );
}

#[test]
fn the_last_answer_keeps_the_status_and_etag_whatever_the_status() {
    let server = TestServer::start(vec![
        ok(b"one", Some("\"v1\"")),
        Reply::Raw(
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        status(404),
    ]);
    let mut f = fetcher(server.url("/m"));
    assert_eq!(f.last_answer(), None);
    f.fetch().unwrap();
    let answer = |status, etag: Option<&str>| Answer {
        status,
        etag: etag.map(str::to_string),
    };
    assert_eq!(f.last_answer(), Some(&answer(200, Some("\"v1\""))));
    f.fetch().unwrap();
    assert_eq!(f.last_answer(), Some(&answer(304, Some("\"v1\""))));
    f.fetch().unwrap_err();
    assert_eq!(f.last_answer(), Some(&answer(404, None)));
}

#[test]
fn the_same_bytes_again_from_a_server_without_etags_are_not_modified() {
    let server = TestServer::start(vec![ok(b"one", None), ok(b"one", None), ok(b"two", None)]);
    let mut f = fetcher(server.url("/m"));
    assert_eq!(f.fetch().unwrap(), Fetched::New(b"one".to_vec()));
    assert_eq!(f.fetch().unwrap(), Fetched::NotModified);
    assert_eq!(f.fetch().unwrap(), Fetched::New(b"two".to_vec()));
}

#[test]
fn after_forget_the_same_manifest_is_handed_over_again() {
    let server = TestServer::start(vec![ok(b"one", Some("\"v1\"")), ok(b"one", Some("\"v1\""))]);
    let mut f = fetcher(server.url("/m"));
    f.fetch().unwrap();
    f.forget();
    assert_eq!(f.fetch().unwrap(), Fetched::New(b"one".to_vec()));
    assert!(!server.requests()[1].contains("if-none-match"));
}

#[test]
fn an_error_status_is_reported_with_its_code_and_a_hint() {
    let server = TestServer::start(vec![status(500), status(404)]);
    let mut f = fetcher(server.url("/m"));
    let err = f.fetch().unwrap_err();
    assert!(
        matches!(err, FetchError::Status { code: 500, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&server.url("/m")) && text.contains("HTTP 500"),
        "{text}"
    );
    let text = f.fetch().unwrap_err().to_string();
    assert!(text.contains("HTTP 404: no manifest at that URL"), "{text}");
}

#[test]
fn a_body_over_the_cap_is_refused_whether_announced_or_not() {
    let announced = Reply::Raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\nxx".to_vec(),
    );
    let unannounced = Reply::Raw(
        [
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"[..],
            &[b'x'; 3000],
        ]
        .concat(),
    );
    let server = TestServer::start(vec![announced, unannounced, ok(&[b'y'; 1000], None)]);
    let mut f = fetcher(server.url("/m"));
    for _ in 0..2 {
        let err = f.fetch().unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit: 1000, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("larger than 1000 bytes"), "{err}");
    }
    assert_eq!(f.fetch().unwrap(), Fetched::New(vec![b'y'; 1000]));
}

#[test]
fn a_stalled_server_times_out_within_the_total_timeout() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nabc".to_vec();
    let server = TestServer::start(vec![Reply::Stall(head, Duration::from_secs(5))]);
    let mut f = Fetcher::new(FetchConfig {
        read_timeout: Duration::from_millis(400),
        ..config(server.url("/m"))
    })
    .unwrap();
    let start = Instant::now();
    let err = f.fetch().unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("within 400 ms"), "{err}");
}

#[test]
fn the_bearer_token_is_read_on_every_fetch_and_never_shown_in_errors() {
    let dir = TestDir::new("token");
    let token = dir.path("token");
    std::fs::write(&token, "secret-one\n").unwrap();
    let server = TestServer::start(vec![ok(b"m", None), status(401)]);
    let mut f = Fetcher::new(FetchConfig {
        token_file: Some(token.clone()),
        ..config(server.url("/m"))
    })
    .unwrap();
    f.fetch().unwrap();
    std::fs::write(&token, "secret-two").unwrap();
    let err = f.fetch().unwrap_err().to_string();
    let requests = server.requests();
    assert!(
        requests[0].contains("authorization: Bearer secret-one"),
        "{}",
        requests[0]
    );
    assert!(
        requests[1].contains("authorization: Bearer secret-two"),
        "{}",
        requests[1]
    );
    assert!(
        err.contains("HTTP 401") && err.contains("--manifest-token-file"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn a_missing_or_empty_token_file_is_named_and_nothing_is_sent() {
    let dir = TestDir::new("no-token");
    let token = dir.path("token");
    let server = TestServer::start(vec![]);
    let mut f = Fetcher::new(FetchConfig {
        token_file: Some(token.clone()),
        ..config(server.url("/m"))
    })
    .unwrap();
    let err = f.fetch().unwrap_err();
    assert!(matches!(err, FetchError::Token { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&token.display().to_string()),
        "{err}"
    );
    std::fs::write(&token, " \n").unwrap();
    assert!(
        f.fetch()
            .unwrap_err()
            .to_string()
            .contains("the file is empty")
    );
    std::fs::write(&token, "two words").unwrap();
    let err = f.fetch().unwrap_err().to_string();
    assert!(
        err.contains("more than one word") && !err.contains("words"),
        "{err}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn a_refused_connection_is_a_connect_error_naming_the_url() {
    let url = format!("http://127.0.0.1:{}/m", closed_port());
    let err = fetcher(url.clone()).fetch().unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn credentials_in_the_url_reach_the_server_but_no_error_and_no_description() {
    let server = TestServer::start(vec![ok(b"one", None), status(403)]);
    let url = server
        .url("/m?X-Amz-Signature=s3cret")
        .replacen("http://", "http://user:pa55@", 1);
    let mut f = fetcher(url);
    assert_eq!(f.fetch().unwrap(), Fetched::New(b"one".to_vec()));
    assert!(
        server.requests()[0].starts_with("GET /m?X-Amz-Signature=s3cret HTTP/1.1"),
        "{:?}",
        server.requests()
    );
    let shown = f.describe();
    assert_eq!(
        shown,
        format!("{}?***", server.url("/m")).replacen("http://", "http://***@", 1)
    );
    let err = f.fetch().unwrap_err().to_string();
    assert!(err.contains(&shown) && err.contains("HTTP 403"), "{err}");
    for text in [&shown, &err] {
        assert!(!text.contains("s3cret") && !text.contains("pa55"), "{text}");
    }
    let closed = format!("http://u:pa55@127.0.0.1:{}/m?sig=s3cret", closed_port());
    let err = fetcher(closed).fetch().unwrap_err().to_string();
    assert!(!err.contains("s3cret") && !err.contains("pa55"), "{err}");
}

fn tls_server(replies: Vec<Reply>) -> TestServer {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use ureq::tls::{PemItem, parse_pem};
    let pem = |bytes: &[u8]| parse_pem(bytes).map(Result::unwrap).collect::<Vec<_>>();
    let chain = pem(include_bytes!("testdata/server.pem"))
        .into_iter()
        .map(|item| match item {
            PemItem::Certificate(c) => CertificateDer::from(c.der().to_vec()),
            _ => panic!("not a certificate"),
        })
        .collect();
    let key = match pem(include_bytes!("testdata/server.key")).remove(0) {
        PemItem::PrivateKey(k) => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.der().to_vec())),
        _ => panic!("not a key"),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    TestServer::start_with(replies, Some(Arc::new(config)))
}

fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/fetch/testdata")
        .join(name)
}

#[test]
fn https_with_the_pinned_ca_fetches_and_with_another_ca_fails_as_tls() {
    let server = tls_server(vec![ok(b"over tls", None), ok(b"never", None)]);
    let url = format!("https://localhost:{}/m", server.port);
    let mut f = Fetcher::new(FetchConfig {
        ca_file: Some(testdata("ca.pem")),
        ..config(url.clone())
    })
    .unwrap();
    assert_eq!(f.fetch().unwrap(), Fetched::New(b"over tls".to_vec()));
    let mut f = Fetcher::new(FetchConfig {
        ca_file: Some(testdata("other-ca.pem")),
        ..config(url.clone())
    })
    .unwrap();
    let err = f.fetch().unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("--ca-file"), "{err}");
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_named() {
    let dir = TestDir::new("ca");
    let missing = dir.path("missing.pem");
    let err = Fetcher::new(FetchConfig {
        ca_file: Some(missing.clone()),
        ..config("https://m.example/m".into())
    })
    .err()
    .unwrap();
    assert!(matches!(err, FetchError::CaFile { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let empty = dir.path("empty.pem");
    std::fs::write(&empty, "not pem\n").unwrap();
    let err = Fetcher::new(FetchConfig {
        ca_file: Some(empty),
        ..config("https://m.example/m".into())
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("holds no certificate"), "{err}");
}

#[test]
fn a_file_is_read_bounded_and_unchanged_bytes_are_not_modified() {
    let dir = TestDir::new("fetch-file");
    let path = dir.path("m.ewm");
    std::fs::write(&path, b"one").unwrap();
    let mut f = fetcher(format!("file://{}", path.display()));
    assert_eq!(f.fetch().unwrap(), Fetched::New(b"one".to_vec()));
    assert_eq!(f.fetch().unwrap(), Fetched::NotModified);
    std::fs::write(&path, vec![0u8; 1001]).unwrap();
    assert!(matches!(
        f.fetch().unwrap_err(),
        FetchError::TooLarge { .. }
    ));
    std::fs::remove_file(&path).unwrap();
    let err = f.fetch().unwrap_err();
    assert!(matches!(err, FetchError::File { .. }), "{err:?}");
    assert!(err.to_string().contains("m.ewm"), "{err}");
    let mut plain = fetcher(path.display().to_string());
    std::fs::write(&path, b"two").unwrap();
    assert_eq!(plain.fetch().unwrap(), Fetched::New(b"two".to_vec()));
    assert_eq!(plain.describe(), format!("file://{}", path.display()));
}

#[test]
fn an_unknown_scheme_is_refused_when_the_fetcher_is_made() {
    let err = Fetcher::new(config("ftp://m.example/m".into()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown scheme"), "{err}");
}

#[test]
fn a_fetcher_can_move_to_a_helper_thread() {
    fn send<T: Send + 'static>() {}
    send::<Fetcher>();
    send::<FetchError>();
}
