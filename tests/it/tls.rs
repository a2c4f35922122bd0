//! HTTPS through the process's one TLS setup (`src/tls.rs`): the real `registry-db serve` binary
//! trusts exactly the system's root certificates (here `SSL_CERT_FILE`, a test CA), for DynamoDB
//! (dynalite over HTTPS, through the SDK's HTTP client on reqwest) and for health probes alike, and
//! does not start without any.

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{ROOT, send, start_server};

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("`openssl` is needed by this test: apt-get install -y openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Pki {
    ca: PathBuf,
    key: PathBuf,
    cert: PathBuf,
}

/// A fresh CA, and a server certificate it signed for the address 127.0.0.1.
fn pki(dir: &Path) -> Pki {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend(ec);
    let (ca_key, ca) = (p("ca-key.pem"), p("ca.pem"));
    ca_args.extend(["-keyout", &ca_key, "-out", &ca, "-days", "2"]);
    ca_args.extend(["-subj", "/CN=registry-db test CA"]);
    ca_args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca_args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(&ca_args);
    let (key, csr, cert, ext) = (p("key.pem"), p("csr.pem"), p("cert.pem"), p("ext.cnf"));
    let mut csr_args = vec!["req"];
    csr_args.extend(ec);
    csr_args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    openssl(&csr_args);
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    Pki {
        ca: ca.into(),
        key: key.into(),
        cert: cert.into(),
    }
}

/// dynalite over HTTPS with this certificate: its endpoint URL.
fn dynalite_https(pki: &Pki) -> (String, Killed) {
    let mut child = Command::new("node")
        .arg(format!("{ROOT}/tests/it/support/dynalite.js"))
        .env("DYNALITE_TLS_KEY", &pki.key)
        .env("DYNALITE_TLS_CERT", &pki.cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start dynalite with node; run ./scripts/test.sh, which installs it");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("dynalite did not start (printed {line:?})"));
    (format!("https://127.0.0.1:{port}"), Killed(child))
}

/// `openssl s_server -www` with this certificate: any GET gets `200 ok` and an HTML status page.
fn https_page(pki: &Pki) -> (SocketAddr, Killed) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &addr.to_string()])
        .arg("-cert")
        .arg(&pki.cert)
        .arg("-key")
        .arg(&pki.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("`openssl` is needed by this test: apt-get install -y openssl");
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (addr, child)
}

fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

#[tokio::test]
async fn serve_reaches_dynamodb_and_probes_over_https_with_the_system_roots() {
    support::require_loopback_only_network();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (endpoint, _dynalite) = dynalite_https(&pki);
    let (page, _page_server) = https_page(&pki);
    let no_dir = dir.path().join("no-cert-dir");
    std::fs::create_dir(&no_dir).unwrap();
    let mut envs = aws_env(&endpoint);
    // The system's roots, as rustls-native-certs reads them: only the test CA.
    envs.push(("SSL_CERT_FILE", pki.ca.to_str().unwrap().to_owned()));
    envs.push(("SSL_CERT_DIR", no_dir.to_str().unwrap().to_owned()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let table = format!("tls-{}", std::process::id());
    let server = start_server(
        &[
            "--store",
            "dynamodb",
            "--table",
            &table,
            "--create-table",
            "--probe-allow-loopback",
        ],
        &envs,
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let entry = json!({
        "container_registry_id": "tls",
        "container_registry_name": "behind TLS",
        "container_registry_public_url": format!("https://{page}"),
    });
    let (status, body) = send(
        &client,
        "POST",
        format!("{}/container_registry", server.base),
        Some(entry),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &client,
        "GET",
        format!("{}/container_registry/tls", server.base),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["container_registry_name"], "behind TLS");

    // The handshake succeeded and an HTTP answer came back: an HTML page, so not a registry.
    let (status, body) = send(
        &client,
        "GET",
        format!("{}/check_container_health/tls", server.base),
        None,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["data"]["status"], "not_registry", "{body}");
    assert_eq!(body["data"]["reachable"], true, "{body}");
    assert_eq!(body["data"]["status_code"], 200, "{body}");
}

#[test]
fn serve_refuses_a_dynamodb_endpoint_whose_certificate_the_system_does_not_trust() {
    support::require_loopback_only_network();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (endpoint, _dynalite) = dynalite_https(&pki);
    // The machine's own roots, which do not include the test CA.
    let out = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--store",
            "dynamodb",
            "--create-table",
        ])
        .args(["--table", &format!("untrusted-{}", std::process::id())])
        .envs(aws_env(&endpoint))
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("REGISTRY_DB_STORE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot reach DynamoDB table"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}

#[test]
fn serve_without_root_certificates_stops_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("SSL_CERT_FILE", dir.path().join("none.pem"))
        .env("SSL_CERT_DIR", dir.path())
        .env_remove("REGISTRY_DB_STORE")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "it listened: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("No CA certificates were loaded"),
        "{stderr}"
    );
}
