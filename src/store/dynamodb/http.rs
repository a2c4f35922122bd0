//! The AWS SDK's HTTP client, on reqwest: the HTTP/1.1 client the probes already use, with the
//! process's one TLS setup (`crate::tls`). The SDK's own default client (aws-smithy-http-client)
//! brings hyper's HTTP/2 client and server code and a second rustls setup: about 0.3 MB of the
//! Lambda zip (README, Performance). DynamoDB speaks HTTP/1.1.
//!
//! Like the SDK's client: one connection pool per timeout setting, the proxy of `HTTPS_PROXY` /
//! `NO_PROXY` (reqwest reads them), and errors sorted so that the SDK retries what is transient.
//! Unlike it, the root certificates are not read when the SDK client is built but at its first
//! request, or before that on the thread the Lambda entry starts for them (`main.rs`); and a
//! connection that saw a transient error is not singled out to be dropped (reqwest drops broken
//! connections itself).

use std::error::Error as _;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;

/// The HTTP client to give `aws_config` (and so every SDK client built from its config).
pub fn sdk_http_client() -> SharedHttpClient {
    SharedHttpClient::new(ReqwestHttpClient::default())
}

type Timeouts = (Option<Duration>, Option<Duration>);

#[derive(Default)]
struct ReqwestHttpClient {
    /// One connector per (connect, read) timeout pair the SDK asks for: in practice one.
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

impl fmt::Debug for ReqwestHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReqwestHttpClient")
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, connector)) = connectors.iter().find(|(k, _)| *k == key) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(ReqwestConnector {
            client: build_client(key),
        });
        connectors.push((key, connector.clone()));
        connector
    }
}

fn build_client((connect, read): Timeouts) -> Result<reqwest::Client, String> {
    let tls = crate::tls::client_config()
        .map_err(|e| format!("cannot build the AWS SDK's HTTP client: {e}"))?;
    let mut builder = reqwest::Client::builder().tls_backend_preconfigured(tls);
    if let Some(connect) = connect {
        builder = builder.connect_timeout(connect);
    }
    if let Some(read) = read {
        builder = builder.read_timeout(read);
    }
    builder.build().map_err(|e| match e.source() {
        Some(source) => format!("cannot build the AWS SDK's HTTP client: {e}: {source}"),
        None => format!("cannot build the AWS SDK's HTTP client: {e}"),
    })
}

struct ReqwestConnector {
    client: Result<reqwest::Client, String>,
}

impl fmt::Debug for ReqwestConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReqwestConnector")
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(e) => {
                let e = ConnectorError::other(e.clone().into(), None);
                return HttpConnectorFuture::ready(Err(e));
            }
        };
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?
                .map(|body: SdkBody| match body.bytes() {
                    Some(bytes) => reqwest::Body::from(bytes.to_vec()),
                    None => reqwest::Body::wrap(body),
                });
            let request =
                reqwest::Request::try_from(request).map_err(|e| ConnectorError::user(e.into()))?;
            let response = client.execute(request).await.map_err(connector_error)?;
            let response =
                http::Response::<reqwest::Body>::from(response).map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Sorts a failed exchange the way the SDK's own client does, so the SDK's retry policy sees the
/// same kinds: timeouts, I/O failures (refused, reset or closed connections, which are retried),
/// mistakes in the request, and the rest.
fn connector_error(err: reqwest::Error) -> ConnectorError {
    if err.is_timeout() {
        ConnectorError::timeout(err.into())
    } else if err.is_builder() {
        ConnectorError::user(err.into())
    } else if err.is_connect() || has_source::<std::io::Error>(&err) {
        ConnectorError::io(err.into())
    } else if err.is_request() {
        // The exchange broke off (a closed connection, an incomplete answer): worth a retry.
        ConnectorError::other(err.into(), Some(ErrorKind::TransientError))
    } else {
        ConnectorError::other(err.into(), None)
    }
}

fn has_source<E: std::error::Error + 'static>(err: &reqwest::Error) -> bool {
    let mut source = err.source();
    while let Some(e) = source {
        if e.is::<E>() {
            return true;
        }
        source = e.source();
    }
    false
}
