//! Small servers on 127.0.0.1 that are not registries, or are registries that misbehave: raw HTTP
//! answers, silence, a TLS certificate nobody trusts, DNS that never answers, connections held open.
//! Each stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::oci_registry;

/// A raw HTTP/1.1 server on 127.0.0.1 that counts connections, keeps each request head and answers
/// with whatever `respond(request_index, request_head)` returns (a full raw response), then closes.
pub struct TestServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn http_server<F>(respond: F) -> TestServer
where
    F: Fn(usize, &str) -> String + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let (c, r) = (connections.clone(), requests.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = c.fetch_add(1, Ordering::SeqCst);
            let (r, respond) = (r.clone(), respond.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                r.lock().unwrap().push(head.clone());
                let response = respond(n, &head);
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    TestServer {
        addr,
        connections,
        requests,
        task,
    }
}

/// Accepts connections and never answers; counts them and keeps them open.
pub async fn silent_server() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    TestServer {
        addr,
        connections,
        requests: Arc::default(),
        task,
    }
}

pub fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// `openssl s_server` with a fresh self-signed certificate on 127.0.0.1; killed on drop.
pub struct TlsServer {
    pub addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tls_server() -> TlsServer {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = oci_registry::self_signed_cert(dir.path(), "self-signed.registry-db.test");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &addr.to_string(),
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("`openssl` is needed by this test: install it with `apt-get install -y openssl`");
    let server = TlsServer {
        addr,
        child,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "openssl s_server did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// A DNS server on 127.0.0.1 that reads every query and never answers; counts the queries.
pub struct SlowDns {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn slow_dns() -> SlowDns {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while socket.recv_from(&mut buf).await.is_ok() {
            q.fetch_add(1, Ordering::SeqCst);
        }
    });
    SlowDns {
        addr,
        queries,
        task,
    }
}

/// An HTTP server that holds every connection `hold` before answering a registry's 200, and records
/// the most connections it had open at once.
pub struct HoldingServer {
    pub addr: SocketAddr,
    pub max_open: Arc<AtomicUsize>,
    pub total: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HoldingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn holding_server(hold: Duration) -> HoldingServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, max_open, total) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (o, m, t) = (open.clone(), max_open.clone(), total.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            t.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                tokio::time::sleep(hold).await;
                // Counted closed before the answer leaves: once the client has read it, it may
                // open the next connection at once, and that one must not overlap this count
                // (it did under load, and the cap tests saw one connection more than the cap).
                o.fetch_sub(1, Ordering::SeqCst);
                let body = response(
                    "200 OK",
                    &[("Docker-Distribution-Api-Version", "registry/2.0")],
                    "{}",
                );
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    HoldingServer {
        addr,
        max_open,
        total,
        task,
    }
}
