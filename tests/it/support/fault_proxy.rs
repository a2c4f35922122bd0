//! A fault-injecting HTTP/1.1 proxy between the service's DynamoDB client and dynalite, on
//! 127.0.0.1 at a port the OS picks. Per request it may answer ThrottlingException (400) or
//! InternalServerError (500) itself, reset the connection before forwarding (nothing applied),
//! forward and then reset instead of answering (applied, the answer lost), or delay before
//! forwarding (a delayed request is still forwarded after its client gave up, as a request in
//! flight on a network would be). Random faults are drawn from a generator seeded with the
//! proxy's seed and the request's number, so a run is reproducible given the order of requests;
//! scripted faults ([`FaultProxy::script`]) hit the next requests of one operation exactly.
//!
//! It understands just enough HTTP for the SDK's requests and dynalite's answers: a head, then a
//! body of `Content-Length` bytes. Each request goes to dynalite on a connection of its own.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest request or answer head, and body, the proxy reads (dynalite's own request limit
/// is 16 MB).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 400 ThrottlingException, not forwarded.
    Throttle,
    /// 500 InternalServerError, not forwarded.
    ServerError,
    /// The connection is reset before the request is forwarded: nothing applied.
    ResetBefore,
    /// Forwarded, then the connection is reset instead of answering: applied, the answer lost.
    ResetAfter,
    /// Forwarded after this long (whether or not the client still waits).
    Delay(Duration),
    /// 400 TransactionCanceledException, every action's reason TransactionConflict (what DynamoDB
    /// answers when a concurrent transaction holds an item), not forwarded.
    Conflict,
}

/// How often each random fault hits a request (fractions of 1; the rest are forwarded).
#[derive(Debug, Clone)]
pub struct Rates {
    pub throttle: f64,
    pub server_error: f64,
    pub reset_before: f64,
    pub reset_after: f64,
    pub delay: f64,
    /// A delay is drawn from 0..=max_delay.
    pub max_delay: Duration,
}

impl Rates {
    pub const NONE: Rates = Rates {
        throttle: 0.0,
        server_error: 0.0,
        reset_before: 0.0,
        reset_after: 0.0,
        delay: 0.0,
        max_delay: Duration::ZERO,
    };
}

/// How many requests met each fault.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicUsize,
    pub throttled: AtomicUsize,
    pub server_errors: AtomicUsize,
    pub reset_before: AtomicUsize,
    pub reset_after: AtomicUsize,
    pub delayed: AtomicUsize,
    pub forwarded: AtomicUsize,
}

impl Counts {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }
}

struct Shared {
    upstream: String,
    seed: u64,
    rates: Mutex<Rates>,
    /// (operation, fault): the next request of that operation meets that fault.
    script: Mutex<VecDeque<(String, Fault)>>,
    /// Drop `ClientRequestToken` from requests: shows what a write does when its retries are not
    /// recognised as retries (the service must still answer right).
    strip_tokens: bool,
    next_request: AtomicU64,
    counts: Counts,
    /// The `ClientRequestToken` of every TransactWriteItems request, in arrival order.
    tokens: Mutex<Vec<Option<String>>>,
}

pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:PORT`), serving on the current tokio runtime.
    pub async fn start(upstream: &str, seed: u64, rates: Rates, strip_tokens: bool) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("the proxy forwards plain HTTP")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream,
            seed,
            rates: Mutex::new(rates),
            script: Mutex::new(VecDeque::new()),
            strip_tokens,
            next_request: AtomicU64::new(0),
            counts: Counts::default(),
            tokens: Mutex::new(Vec::new()),
        });
        let for_accept = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let shared = for_accept.clone();
                tokio::spawn(async move {
                    // A connection that breaks just ends; the client sees what it would see.
                    let _ = serve(shared, client).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            shared,
            accept,
        }
    }

    /// The next request of `operation` (`TransactWriteItems`, `GetItem`, ...) meets `fault`; several
    /// calls queue up in order.
    pub fn script(&self, operation: &str, fault: Fault) {
        self.shared
            .script
            .lock()
            .unwrap()
            .push_back((operation.to_string(), fault));
    }

    /// Scripted faults not yet met.
    pub fn scripted_left(&self) -> usize {
        self.shared.script.lock().unwrap().len()
    }

    pub fn set_rates(&self, rates: Rates) {
        *self.shared.rates.lock().unwrap() = rates;
    }

    pub fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    /// The `ClientRequestToken` of every TransactWriteItems request so far, in arrival order.
    pub fn transaction_tokens(&self) -> Vec<Option<String>> {
        self.shared.tokens.lock().unwrap().clone()
    }
}

struct Request {
    head: Vec<String>,
    body: Vec<u8>,
    operation: String,
}

async fn serve(shared: Arc<Shared>, mut client: TcpStream) -> std::io::Result<()> {
    let mut buffered = Vec::new();
    loop {
        let Some(request) = read_request(&mut client, &mut buffered).await? else {
            return Ok(());
        };
        let fault = choose(&shared, &request.operation);
        let counts = &shared.counts;
        counts.requests.fetch_add(1, Ordering::Relaxed);
        if request.operation == "TransactWriteItems" {
            let token = serde_json::from_slice::<serde_json::Value>(&request.body)
                .ok()
                .and_then(|doc| Some(doc.get("ClientRequestToken")?.as_str()?.to_string()));
            shared.tokens.lock().unwrap().push(token);
        }
        match fault {
            Some(Fault::Conflict) => {
                let actions = serde_json::from_slice::<serde_json::Value>(&request.body)
                    .ok()
                    .and_then(|doc| Some(doc.get("TransactItems")?.as_array()?.len()))
                    .unwrap_or(1);
                let reasons = vec![
                    r#"{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}"#;
                    actions
                ];
                let body = format!(
                    r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict]","CancellationReasons":[{}]}}"#,
                    reasons.join(",")
                );
                client.write_all(&answer(400, &body)).await?;
                continue;
            }
            Some(Fault::Throttle) => {
                counts.throttled.fetch_add(1, Ordering::Relaxed);
                let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                client.write_all(&answer(400, body)).await?;
                continue;
            }
            Some(Fault::ServerError) => {
                counts.server_errors.fetch_add(1, Ordering::Relaxed);
                let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#;
                client.write_all(&answer(500, body)).await?;
                continue;
            }
            Some(Fault::ResetBefore) => {
                counts.reset_before.fetch_add(1, Ordering::Relaxed);
                return reset(client);
            }
            Some(Fault::Delay(delay)) => {
                counts.delayed.fetch_add(1, Ordering::Relaxed);
                // Forwarded even if the client gives up meanwhile: a request in flight arrives.
                let shared = shared.clone();
                let request = Request {
                    head: request.head.clone(),
                    body: request.body.clone(),
                    operation: request.operation.clone(),
                };
                let (done, answered) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = done.send(forward(&shared, &request).await);
                });
                let response = answered
                    .await
                    .map_err(|_| std::io::Error::other("forward ended"))??;
                counts.forwarded.fetch_add(1, Ordering::Relaxed);
                client.write_all(&response).await?;
            }
            Some(Fault::ResetAfter) => {
                let _ = forward(&shared, &request).await?;
                counts.forwarded.fetch_add(1, Ordering::Relaxed);
                counts.reset_after.fetch_add(1, Ordering::Relaxed);
                return reset(client);
            }
            None => {
                let response = forward(&shared, &request).await?;
                counts.forwarded.fetch_add(1, Ordering::Relaxed);
                client.write_all(&response).await?;
            }
        }
    }
}

fn choose(shared: &Shared, operation: &str) -> Option<Fault> {
    {
        let mut script = shared.script.lock().unwrap();
        if let Some(i) = script.iter().position(|(op, _)| op == operation) {
            return script.remove(i).map(|(_, fault)| fault);
        }
    }
    let n = shared.next_request.fetch_add(1, Ordering::Relaxed);
    let mut rng = StdRng::seed_from_u64(shared.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let rates = shared.rates.lock().unwrap().clone();
    let roll: f64 = rng.random();
    let mut edge = 0.0;
    for (rate, fault) in [
        (rates.throttle, Fault::Throttle),
        (rates.server_error, Fault::ServerError),
        (rates.reset_before, Fault::ResetBefore),
        (rates.reset_after, Fault::ResetAfter),
    ] {
        edge += rate;
        if roll < edge {
            return Some(fault);
        }
    }
    edge += rates.delay;
    if roll < edge {
        let max = u64::try_from(rates.max_delay.as_millis()).unwrap_or(u64::MAX);
        return Some(Fault::Delay(Duration::from_millis(
            rng.random_range(0..=max),
        )));
    }
    None
}

/// A reset (RST), not an orderly close: linger 0, then drop. (Deprecated because a nonzero linger
/// blocks the thread on drop; a zero linger never waits.)
#[allow(deprecated)]
fn reset(client: TcpStream) -> std::io::Result<()> {
    client.set_linger(Some(Duration::ZERO))?;
    drop(client);
    Ok(())
}

fn answer(status: u16, body: &str) -> Vec<u8> {
    let reason = if status == 500 {
        "Internal Server Error"
    } else {
        "Bad Request"
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: fault-proxy\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one message head (the lines before the blank line) and the `Content-Length` bytes after
/// it from `stream`, keeping what was read beyond it in `buffered`. `None` at a clean end.
async fn read_message(
    stream: &mut TcpStream,
    buffered: &mut Vec<u8>,
) -> std::io::Result<Option<(Vec<String>, Vec<u8>)>> {
    let head_end = loop {
        if let Some(at) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffered.len() > MAX_HEAD {
            return Err(std::io::Error::other("head too large"));
        }
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return if buffered.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::other("closed inside a head"))
            };
        }
        buffered.extend_from_slice(&chunk[..read]);
    };
    let head: Vec<String> = String::from_utf8_lossy(&buffered[..head_end])
        .split("\r\n")
        .map(str::to_string)
        .collect();
    buffered.drain(..head_end + 4);
    let length = header(&head, "content-length")
        .map(|v| v.parse::<usize>().map_err(std::io::Error::other))
        .transpose()?
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(std::io::Error::other("body too large"));
    }
    while buffered.len() < length {
        let mut chunk = vec![0u8; (length - buffered.len()).min(64 * 1024)];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::Error::other("closed inside a body"));
        }
        buffered.extend_from_slice(&chunk[..read]);
    }
    let body = buffered.drain(..length).collect();
    Ok(Some((head, body)))
}

async fn read_request(
    client: &mut TcpStream,
    buffered: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    let Some((head, body)) = read_message(client, buffered).await? else {
        return Ok(None);
    };
    let operation = header(&head, "x-amz-target")
        .and_then(|t| t.split('.').nth(1))
        .unwrap_or("")
        .to_string();
    Ok(Some(Request {
        head,
        body,
        operation,
    }))
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// `head` without the headers named in `drop`, then `extra`, as bytes ending in the blank line.
fn rebuild(head: &[String], drop: &[&str], extra: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for (i, line) in head.iter().enumerate() {
        let name = line.split_once(':').map(|(k, _)| k.trim()).unwrap_or("");
        if i > 0 && drop.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Sends the request to dynalite on a connection of its own and returns the answer as bytes for
/// the client (without dynalite's `Connection: close`, so the client's connection stays open).
async fn forward(shared: &Shared, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut body = request.body.clone();
    if shared.strip_tokens
        && let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_slice(&body)
        && doc.remove("ClientRequestToken").is_some()
    {
        body = serde_json::to_vec(&doc).unwrap();
    }
    let mut upstream = TcpStream::connect(&shared.upstream).await?;
    let mut out = rebuild(
        &request.head,
        &["content-length", "connection"],
        &[
            format!("Content-Length: {}", body.len()),
            "Connection: close".to_string(),
        ],
    );
    out.extend_from_slice(&body);
    upstream.write_all(&out).await?;
    let mut buffered = Vec::new();
    let (head, body) = read_message(&mut upstream, &mut buffered)
        .await?
        .ok_or_else(|| std::io::Error::other("dynalite closed without answering"))?;
    let mut response = rebuild(&head, &["connection"], &[]);
    response.extend_from_slice(&body);
    Ok(response)
}
