//! A test token server for `docker-registry`'s `auth: token`: the distribution spec's Bearer flow
//! for real. It answers `GET /token?service=...&scope=repository:NAME:ACTIONS` with a JWT (ES256,
//! its certificate in `x5c`) that the registry checks against `cert` (its `rootcertbundle`).
//!
//! Who gets what:
//! - a request with an `Authorization` header (skopeo pushing with `--dest-creds`): every action
//!   it asks for;
//! - an anonymous request: `pull` only; for a name under `private/` the realm refuses (401), and
//!   under `secret/` it answers a token granting nothing (the registry refuses that token).
//!
//! Every request head is kept (`requests()`), so a test can see what the service sent the realm.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;

use super::servers::{TestServer, http_server, response};

pub const SERVICE: &str = "registry-db-test-registry";
pub const ISSUER: &str = "registry-db-test-issuer";

pub struct TokenServer {
    pub server: TestServer,
    /// The realm to configure the registry with: `http://127.0.0.1:P/token`.
    pub realm: String,
    /// The issuer's certificate (PEM), the registry's `rootcertbundle`.
    pub cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    pub fn requests(&self) -> Vec<String> {
        self.server.requests()
    }

    /// The `auth: token` mode of a registry that trusts this server.
    pub fn mode(&self) -> super::oci_registry::Mode {
        super::oci_registry::Mode::TokenIssuer {
            realm: self.realm.clone(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            cert: self.cert.clone(),
        }
    }
}

pub async fn token_server() -> TokenServer {
    let dir = tempfile::Builder::new()
        .prefix("token-server-")
        .tempdir()
        .unwrap();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
    let cert = dir.path().join("cert.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-new", "-key"])
        .arg(&key_path)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "2", "-subj", &format!("/CN={ISSUER}")])
        .output()
        .expect("openssl is needed by this test: apt-get install -y openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let cert_der_b64: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let key = Arc::new(
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(),
    );
    let server = http_server(move |_, head| answer(head, &key, &cert_der_b64)).await;
    let realm = format!("{}/token", server.url());
    TokenServer {
        server,
        realm,
        cert,
        _dir: dir,
    }
}

fn answer(head: &str, key: &EcdsaKeyPair, x5c: &str) -> String {
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let authorized = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
    let mut access = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k != "scope" {
            continue;
        }
        let mut parts = v.splitn(3, ':');
        let (kind, name, actions) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let mut granted: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
        if !authorized {
            if name.starts_with("private/") {
                return response(
                    "401 Unauthorized",
                    &[("Content-Type", "application/json")],
                    r#"{"details":"anonymous access is not allowed"}"#,
                );
            }
            granted.retain(|a| *a == "pull");
            if name.starts_with("secret/") {
                granted.clear();
            }
        }
        access.push(json!({"type": kind, "name": name, "actions": granted}));
    }
    let now = chrono::Utc::now().timestamp();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = json!({
        "iss": ISSUER, "sub": if authorized { "pusher" } else { "" }, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 60, "iat": now - 60,
        "jti": uuid::Uuid::new_v4().to_string(), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    );
    response(
        "200 OK",
        &[("Content-Type", "application/json")],
        &json!({"token": token, "access_token": token, "expires_in": 600}).to_string(),
    )
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
