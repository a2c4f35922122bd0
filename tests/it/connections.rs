//! The real `registry-db serve` against hostile connections (issue 18, finding 2): request heads
//! sent half, connections left idle, bodies that stall, requests that take too long, floods of
//! sockets past the connection cap and the open-files limit, and thousands of stalled uploads,
//! whose peak memory is read from `/proc`. Settings are small so that the tests are quick; every
//! wait is bounded, and "cut" means "cut within ten times its timeout".

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A partial request head: the request line and one header, no blank line.
const PARTIAL_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

fn addr(base: &str) -> SocketAddr {
    base.strip_prefix("http://").unwrap().parse().unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect to the server")
}

/// Reads until the server closes the socket (EOF or reset) or `within` passes; returns whether it
/// closed, and what it sent first.
fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, String::from_utf8_lossy(&got).into_owned());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return (true, String::from_utf8_lossy(&got).into_owned());
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading from the server: {e}"),
        }
    }
}

/// Reads one answer (head and `Content-Length` body) within `within`; `None` if it does not come.
fn read_answer(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Some(text);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (!got.is_empty()).then_some(text),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading an answer: {e}"),
        }
    }
}

/// `/healthz` and a GET of a missing entry answer, each within 10 s.
fn still_answers(client: &reqwest::blocking::Client, base: &str) {
    let resp = client
        .get(format!("{base}/healthz"))
        .send()
        .expect("/healthz answers");
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(format!("{base}/container_registry/missing"))
        .send()
        .expect("a GET answers");
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["code"], "not_found");
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// This process's open-files soft limit raised to its hard limit, which must allow `want` (the
/// floods below may run at the same time, so each takes what it can); fails loudly otherwise.
fn raise_own_open_files(want: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    assert!(
        limit.maximum.is_none_or(|m| m >= want),
        "this test needs {want} open files; the hard limit is {:?}",
        limit.maximum
    );
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
        .unwrap();
    }
}

/// A `registry-db serve` started under `prlimit --nofile=N:N` (soft and hard), so that it cannot
/// raise its own limit; killed when dropped.
struct Limited {
    child: Child,
    base: String,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_with_open_files(nofile: u64, args: &[&str]) -> Limited {
    use std::io::BufRead;
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_registry-db"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("REGISTRY_DB_WRITE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start registry-db under prlimit (util-linux)");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("registry-db listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from registry-db: {line:?}"))
        .to_string();
    Limited { child, base }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn partial_heads_are_closed_after_the_header_timeout_even_when_trickled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // The idle timeout is long: only the header timeout can cut these.
    let server = support::start_server(
        &[
            "--data",
            data,
            "--header-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "120",
        ],
        &[],
    );
    let addr = addr(&server.base);
    let mut sockets: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(PARTIAL_HEAD).unwrap();
            s
        })
        .collect();
    // One more sends a header line every 200 ms: the timeout runs from the head's first byte, so
    // trickling does not keep it open. Writes fail once the server has closed it.
    let mut trickler = connect(addr);
    trickler.write_all(PARTIAL_HEAD).unwrap();
    let start = Instant::now();
    let mut trickle_closed = false;
    while start.elapsed() < Duration::from_secs(10) {
        if trickler.write_all(b"X-Slow: 1\r\n").is_err() {
            trickle_closed = true;
            break;
        }
        let (closed, _) = closed_within(&mut trickler, Duration::from_millis(200));
        if closed {
            trickle_closed = true;
            break;
        }
    }
    assert!(trickle_closed, "a trickled head was still open after 10 s");
    for (i, s) in sockets.iter_mut().enumerate() {
        let (closed, sent) = closed_within(s, Duration::from_secs(10));
        assert!(closed, "partial head {i} still open 10 s past its timeout");
        assert!(sent.is_empty(), "no answer to half a head: {sent:?}");
    }
    still_answers(&client(), &server.base);
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // The header timeout is long: only the idle timeout can cut these.
    let server = support::start_server(
        &[
            "--data",
            data,
            "--idle-timeout-secs",
            "1",
            "--header-timeout-secs",
            "120",
        ],
        &[],
    );
    let addr = addr(&server.base);
    // Never sent a byte, and done with one request: both are idle.
    let mut silent = connect(addr);
    let mut used = connect(addr);
    used.write_all(HEALTHZ).unwrap();
    let answer = read_answer(&mut used, Duration::from_secs(10)).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (what, s) in [("silent", &mut silent), ("kept alive", &mut used)] {
        let (closed, sent) = closed_within(s, Duration::from_secs(10));
        assert!(
            closed,
            "{what} connection still open 10 s past the idle timeout"
        );
        assert!(sent.is_empty(), "{what}: {sent:?}");
    }
    still_answers(&client(), &server.base);
}

#[test]
fn a_stalled_body_is_cut_with_a_408_in_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = support::start_server(
        &[
            "--data",
            data,
            "--body-timeout-secs",
            "2",
            "--request-timeout-secs",
            "120",
            // Shorter than the body timeout: neither may cut a connection with a request in
            // flight, so the answer must be the body timeout's 408.
            "--idle-timeout-secs",
            "1",
            "--header-timeout-secs",
            "1",
        ],
        &[],
    );
    let mut s = connect(addr(&server.base));
    s.write_all(
        b"POST /container_registry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"container_",
    )
    .unwrap();
    let (closed, sent) = closed_within(&mut s, Duration::from_secs(10));
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains("\"code\":\"body_timeout\""), "{sent}");
    assert!(sent.contains("within 2 s"), "{sent}");
    assert!(closed, "the connection of a cut body stays open: {sent}");
    still_answers(&client(), &server.base);
}

#[test]
fn a_request_that_takes_too_long_is_a_503_with_retry_after() {
    support::require_loopback_only_network();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // A "registry" that accepts connections (the kernel's backlog) and never answers: the probe
    // waits for its own 60 s timeout, well past the request timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = support::start_server(
        &[
            "--data",
            data,
            "--request-timeout-secs",
            "1",
            "--probe-timeout-ms",
            "60000",
            "--probe-allow-loopback",
        ],
        &[],
    );
    let client = client();
    let resp = client
        .post(format!("{}/container_registry", server.base))
        .json(&json!({
            "container_registry_id": "silent",
            "container_registry_name": "silent",
            "container_registry_public_url": format!("http://{}", silent.local_addr().unwrap()),
        }))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = client
        .get(format!("{}/check_container_health/silent", server.base))
        .send()
        .expect("the health check is answered, not left hanging");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "request_timeout", "{body}");
    still_answers(&client, &server.base);
}

#[test]
fn at_the_connection_cap_a_new_connection_waits_for_a_busy_one_and_displaces_an_idle_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = support::start_server(
        &[
            "--data",
            data,
            "--max-connections",
            "4",
            "--body-timeout-secs",
            "120",
            "--request-timeout-secs",
            "120",
            "--idle-timeout-secs",
            "120",
        ],
        &[],
    );
    let addr = addr(&server.base);
    // Four connections, each with a request in flight (a body that stalls): the cap is full.
    // Hyper's `100 Continue` says that the handler is reading the body, so the request is in
    // flight (until then the connection still counts as sending its head, and may be displaced).
    let mut busy: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(
                b"POST /container_registry HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
            )
            .unwrap();
            let answer = read_answer(&mut s, Duration::from_secs(10)).expect("100 Continue");
            assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
            s.write_all(b"{").unwrap();
            s
        })
        .collect();
    // The fifth is not served while they last (it waits, in the backlog or accepted)...
    let mut fifth = connect(addr);
    fifth.write_all(HEALTHZ).unwrap();
    assert_eq!(
        read_answer(&mut fifth, Duration::from_secs(2)),
        None,
        "a fifth connection was served past a cap of 4"
    );
    // ... and is as soon as one of them ends.
    drop(busy.pop());
    let answer =
        read_answer(&mut fifth, Duration::from_secs(10)).expect("served after a slot freed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(busy);
    drop(fifth);

    // Four connections idle after a request each: a new one closes the one idle longest and is
    // served at once.
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(HEALTHZ).unwrap();
            let answer = read_answer(&mut s, Duration::from_secs(10)).expect("an answer");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            s
        })
        .collect();
    let mut newcomer = connect(addr);
    newcomer.write_all(HEALTHZ).unwrap();
    let answer = read_answer(&mut newcomer, Duration::from_secs(10)).expect("served at the cap");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (closed, _) = closed_within(&mut idle[0], Duration::from_secs(10));
    assert!(closed, "the longest-idle connection was not the one closed");
    // The others are still usable.
    for s in &mut idle[1..] {
        s.write_all(HEALTHZ).unwrap();
        let answer = read_answer(s, Duration::from_secs(10)).expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[test]
fn two_thousand_idle_and_half_sent_sockets_under_a_1024_file_limit_leave_requests_answering() {
    const SOCKETS: usize = 2000;
    raise_own_open_files(2 * SOCKETS as u64 + 512);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // As in the issue: 1,024 open files, which the server cannot raise. It lowers a cap set
    // above the limit to fit under it; timeouts are long, so only the cap protects it here.
    let server = start_with_open_files(
        1024,
        &[
            "--data",
            data,
            "--max-connections",
            "100000",
            "--header-timeout-secs",
            "300",
            "--idle-timeout-secs",
            "300",
        ],
    );
    let addr = addr(&server.base);
    let client = client();
    let mut sockets = Vec::with_capacity(SOCKETS);
    for i in 0..SOCKETS {
        let mut s = connect(addr);
        if i % 2 == 0 {
            // A write to a socket the server has already closed to make room may fail.
            let _ = s.write_all(PARTIAL_HEAD);
        }
        sockets.push(s);
        if i % 500 == 499 {
            still_answers(&client, &server.base);
        }
    }
    still_answers(&client, &server.base);
    // The cap keeps room under the limit for the store and for probes (one per probe in flight).
    let fds = open_fds(server.child.id());
    assert!(
        fds <= 1024 - 256,
        "the server holds {fds} of its 1,024 files"
    );
    // A client that keeps its connection busy keeps it: requests on one connection all answer.
    let mut s = connect(addr);
    for _ in 0..5 {
        s.write_all(HEALTHZ).unwrap();
        let answer = read_answer(&mut s, Duration::from_secs(10)).expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[test]
fn two_thousand_stalled_uploads_keep_peak_memory_bounded() {
    const UPLOADS: usize = 2000;
    /// What each sends of its declared 256 KiB before it stalls.
    const SENT: usize = 255 * 1024;
    /// Peak RSS allowed: an unbounded server buffers 2,000 × 255 KiB (about 500 MiB; 573 MB in
    /// the issue). Bounded: an empty server (about 30 MiB), the 8 MiB budget, and a few KiB per
    /// connection.
    const BOUND_MIB: u64 = 160;
    raise_own_open_files(2 * UPLOADS as u64 + 512);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = support::start_server(
        &[
            "--data",
            data,
            "--max-connections",
            "4000",
            "--body-budget-mib",
            "8",
            "--body-timeout-secs",
            "5",
            "--request-timeout-secs",
            "60",
            "--idle-timeout-secs",
            "60",
            "--header-timeout-secs",
            "60",
        ],
        &[("RUST_LOG", "warn")],
    );
    let addr = addr(&server.base);
    let head = format!(
        "POST /container_registry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        256 * 1024
    );
    let body = vec![b' '; SENT];
    // Non-blocking: a body the server does not read stays in the kernel's buffers, not here.
    let mut uploads: Vec<(TcpStream, usize)> = (0..UPLOADS)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(head.as_bytes()).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, 0)
        })
        .collect();
    // Push the bodies for a bounded time, round after round, as far as each socket takes them.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let mut progress = false;
        for (s, sent) in uploads.iter_mut().filter(|(_, sent)| *sent < SENT) {
            match s.write(&body[*sent..]) {
                Ok(n) if n > 0 => {
                    *sent += n;
                    progress = true;
                }
                // Full, or closed by the server (503 or 408): either way, no more from this one.
                Ok(_) | Err(_) => {}
            }
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let sent: usize = uploads.iter().map(|(_, n)| n).sum();
    assert!(
        sent > 100 << 20,
        "only {} MiB of bodies reached the server's sockets",
        sent >> 20
    );
    still_answers(&client(), &server.base);
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    // By now every upload is past its budget wait and its body timeout.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (s, _) in &mut uploads {
        s.set_nonblocking(false).unwrap();
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, sent) = closed_within(s, left.max(Duration::from_millis(10)));
        let status = sent.get(9..12).unwrap_or("none").to_string();
        *answers.entry(status).or_default() += 1;
    }
    let peak = support::peak_rss_kib(server.pid()) >> 10;
    eprintln!("peak RSS {peak} MiB; answers by status: {answers:?}");
    assert!(
        peak < BOUND_MIB,
        "peak RSS {peak} MiB with {UPLOADS} stalled uploads (bound {BOUND_MIB} MiB)"
    );
    // Every upload was told why (no budget: 503; stalled: 408), none was left hanging.
    assert!(
        answers.keys().all(|k| k == "503" || k == "408"),
        "{answers:?}"
    );
    assert!(answers.contains_key("503"), "{answers:?}");
    assert!(answers.contains_key("408"), "{answers:?}");
}

#[test]
fn a_stop_signal_closes_idle_connections_and_answers_the_request_in_flight_before_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut server = start_with_open_files(
        4096,
        &[
            "--data",
            data,
            "--request-timeout-secs",
            "2",
            "--body-timeout-secs",
            "120",
            "--idle-timeout-secs",
            "120",
            "--header-timeout-secs",
            "120",
        ],
    );
    let addr = addr(&server.base);
    let mut idle = connect(addr);
    let mut half = connect(addr);
    half.write_all(PARTIAL_HEAD).unwrap();
    let mut busy = connect(addr);
    busy.write_all(
        b"POST /container_registry HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let answer = read_answer(&mut busy, Duration::from_secs(10)).expect("100 Continue");
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for (what, s) in [("idle", &mut idle), ("half-sent", &mut half)] {
        let (closed, sent) = closed_within(s, Duration::from_secs(10));
        assert!(
            closed,
            "the {what} connection stayed open after the stop signal"
        );
        assert!(sent.is_empty(), "{what}: {sent:?}");
    }
    // The request in flight is answered (here by its request timeout), not dropped.
    let (_, sent) = closed_within(&mut busy, Duration::from_secs(20));
    assert!(sent.starts_with("HTTP/1.1 503"), "{sent}");
    assert!(sent.contains("request_timeout"), "{sent}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn past_the_body_budget_an_upload_is_a_503_with_retry_after_until_room_frees() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // 1 MiB: exactly four bodies of the largest size.
    let server = support::start_server(
        &[
            "--data",
            data,
            "--body-budget-mib",
            "1",
            "--body-timeout-secs",
            "120",
            "--request-timeout-secs",
            "120",
        ],
        &[],
    );
    let addr = addr(&server.base);
    let head = format!(
        "POST /container_registry HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        256 * 1024
    );
    // Hyper's `100 Continue` comes when the body is first read, after its room is taken.
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(head.as_bytes()).unwrap();
            let answer = read_answer(&mut s, Duration::from_secs(10)).expect("100 Continue");
            assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
            s.write_all(b"{").unwrap();
            s
        })
        .collect();
    let client = client();
    let create = |id: &str| {
        client
            .post(format!("{}/container_registry", server.base))
            .json(&support::entry(id, id))
            .send()
            .expect("an answer")
    };
    let resp = create("one");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().unwrap();
    assert_eq!(body["code"], "server_busy", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("request bodies being read"),
        "{body}"
    );
    // GETs read no body and are not held up.
    still_answers(&client, &server.base);
    drop(stalled.pop());
    // The dropped upload's handler gives its room back as it fails; allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = create("two");
        if resp.status() == 201 {
            break;
        }
        assert_eq!(resp.status(), 503);
        assert!(
            Instant::now() < deadline,
            "the room of a closed upload never came back"
        );
    }
}

#[test]
fn a_request_head_of_exactly_the_limit_is_served_and_one_byte_more_is_431() {
    const MAX: usize = registry_db::server::conn::MAX_HEAD_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(&["--data", dir.path().to_str().unwrap()], &[]);
    let addr = addr(&server.base);
    let head = |len: usize| {
        let start = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ";
        let end = "\r\n\r\n";
        format!("{start}{}{end}", "a".repeat(len - start.len() - end.len()))
    };
    for (len, status) in [(MAX, "200"), (MAX + 1, "431")] {
        let mut s = connect(addr);
        let head = head(len);
        assert_eq!(head.len(), len);
        s.write_all(head.as_bytes()).unwrap();
        let answer = read_answer(&mut s, Duration::from_secs(10)).expect("an answer");
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{len} bytes: {answer}"
        );
    }
}
