//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on a free 127.0.0.1
//! port, with a generated config and storage in a temporary directory, killed on drop.
//!
//! ```ignore
//! let open = OciRegistry::start(Mode::Open);            // GET /v2/ -> 200 {}
//! let basic = OciRegistry::start(Mode::htpasswd());     // 401 Basic realm="..."
//! let bearer = OciRegistry::start(Mode::token());       // 401 Bearer realm="...",service="..."
//! probe(&open.url).await;
//! ```
//!
//! When a tool is missing the helper panics with the command that installs it: a test that needs a
//! real registry fails loudly rather than skipping.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install it with `apt-get update && apt-get install -y docker-registry apache2-utils openssl` \
     (see ../shared/TOOLS.md); set DOCKER_REGISTRY_BIN to use another binary";

/// How the registry authenticates.
#[derive(Debug, Clone)]
pub enum Mode {
    /// No auth: `GET /v2/` answers 200 `{}`.
    Open,
    /// `auth.htpasswd` with one bcrypt user: 401 `Basic realm="{realm}"`.
    Htpasswd {
        realm: String,
        user: String,
        password: String,
    },
    /// `auth.token` with a generated self-signed issuer certificate: 401 `Bearer realm="{realm}",service="{service}"`.
    Token {
        realm: String,
        service: String,
        issuer: String,
    },
    /// `auth.token` trusting `cert` (a test token server's, `support::token_server`): a real
    /// Bearer flow.
    TokenIssuer {
        realm: String,
        service: String,
        issuer: String,
        cert: PathBuf,
    },
}

impl Mode {
    pub fn htpasswd() -> Self {
        Mode::Htpasswd {
            realm: "registry-db test realm".into(),
            user: "tester".into(),
            password: "s3cret-pass".into(),
        }
    }

    pub fn token() -> Self {
        Mode::Token {
            realm: "https://auth.registry-db.test/token".into(),
            service: "registry-db-test-registry".into(),
            issuer: "registry-db-test-issuer".into(),
        }
    }
}

/// A running `docker-registry`. Killed (and its directory removed) on drop.
pub struct OciRegistry {
    /// `http://127.0.0.1:PORT`: the public URL to give the service.
    pub url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl OciRegistry {
    /// Starts the registry and waits until it accepts connections (at most 15 s).
    ///
    /// # Panics
    /// When `docker-registry` (or `htpasswd`/`openssl` for the auth modes) is missing, or the registry
    /// does not come up; the message says why and includes the registry's own output.
    pub fn start(mode: Mode) -> OciRegistry {
        let bin =
            std::env::var("DOCKER_REGISTRY_BIN").unwrap_or_else(|_| "docker-registry".to_owned());
        require_tool(&bin, &["--version"]);
        // A port picked by binding :0 can be taken by someone else before the registry binds it; try again then.
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin, &mode) {
                Ok(registry) => return registry,
                Err(e) => last_error = e,
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    fn try_start(bin: &str, mode: &Mode) -> Result<OciRegistry, String> {
        let dir = tempfile::Builder::new()
            .prefix("oci-registry-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let addr = free_port();
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).map_err(|e| e.to_string())?;
        let auth = match mode {
            Mode::Open => String::new(),
            Mode::Htpasswd {
                realm,
                user,
                password,
            } => {
                let file = dir.path().join("htpasswd");
                run_tool("htpasswd", &["-Bbc", path_str(&file), user, password]);
                format!(
                    "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
                    yaml_str(realm),
                    yaml_str(path_str(&file))
                )
            }
            Mode::Token {
                realm,
                service,
                issuer,
            } => {
                let (_, cert) = self_signed_cert(dir.path(), issuer);
                token_auth(realm, service, issuer, &cert)
            }
            Mode::TokenIssuer {
                realm,
                service,
                issuer,
                cert,
            } => token_auth(realm, service, issuer, cert),
        };
        let config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: registry-db-test-secret\n\
             health:\n  storagedriver:\n    enabled: false\n\
             {auth}",
            storage = yaml_str(path_str(&storage)),
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log_path = dir.path().join("registry.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;

        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("could not run {bin}: {e}; {INSTALL_HINT}"))?;

        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "it exited with {status}; its output:\n{}",
                    read_log(&log_path)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it did not listen on {addr} within 15 s; its output:\n{}",
                    read_log(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(OciRegistry {
            url: format!("http://{addr}"),
            child,
            dir,
        })
    }

    /// What the registry has logged so far.
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("registry.log"))
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 127.0.0.1 port that was free a moment ago.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

fn require_tool(tool: &str, args: &[&str]) {
    match Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => {
            panic!("`{tool}` is needed by this test but could not be run ({e}); {INSTALL_HINT}")
        }
    }
}

/// A fresh EC key and a self-signed certificate for `common_name`, as `(key.pem, cert.pem)` in `dir`.
pub fn self_signed_cert(dir: &Path, common_name: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    run_tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            path_str(&key),
            "-out",
            path_str(&cert),
            "-days",
            "2",
            "-subj",
            &format!("/CN={common_name}"),
        ],
    );
    (key, cert)
}

fn run_tool(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("`{tool}` is needed by this test but could not be run ({e}); {INSTALL_HINT}")
    });
    assert!(
        out.status.success(),
        "`{tool} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_log(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn token_auth(realm: &str, service: &str, issuer: &str, cert: &Path) -> String {
    format!(
        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
        yaml_str(realm),
        yaml_str(service),
        yaml_str(issuer),
        yaml_str(path_str(cert))
    )
}

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
