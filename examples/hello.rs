//! The benchmark's baseline: the smallest axum server on the same runtime as `registry-db serve`
//! (tokio's multi-threaded runtime, one TCP listener, HTTP/1.1 keep-alive), answering
//! `GET /` with a fixed body. `scripts/bench.sh` measures it in the same run as the service, so the
//! service's figures can be read as a fraction of what axum itself can do on that machine.
//!
//! `GET /bytes/{n}` answers `n` fixed bytes (at most 1 MiB) as JSON: the most axum, the kernel and
//! wrk can move on that machine for an answer of a GET's or a query's size, with no work behind it.
//!
//!   cargo run --release --example hello -- 127.0.0.1:0

use axum::extract::Path;
use axum::{Router, routing::get};
use bytes::Bytes;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // The same line `registry-db serve` prints, so the bench script finds the port the same way.
    println!("hello listening on http://{}", listener.local_addr()?);
    let fixed = Bytes::from(vec![b' '; 1 << 20]);
    let app = Router::new()
        .route("/", get(|| async { "Hello, World!" }))
        .route(
            "/bytes/{n}",
            get(move |Path(n): Path<usize>| {
                let body = fixed.slice(..n.min(fixed.len()));
                async move { ([("content-type", "application/json")], body) }
            }),
        );
    axum::serve(listener, app).await
}
