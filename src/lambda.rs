//! The Lambda entry: one function serves API Gateway HTTP events through the same `Router` as the
//! local server, and runs a health sweep when EventBridge (or EventBridge Scheduler) invokes it on
//! its schedule.

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Service};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use crate::domain::catalog::Catalog;
use crate::health::SweepOptions;

/// True for an EventBridge scheduled event (`"detail-type": "Scheduled Event"`), which is also
/// the payload `template.yaml` gives the Scheduler.
pub fn is_scheduled_event(event: &Value) -> bool {
    event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        && event
            .get("source")
            .and_then(Value::as_str)
            .is_some_and(|s| s == "aws.events" || s == "aws.scheduler")
}

/// Handles one invocation: a scheduled sweep, or an HTTP request answered by the router.
pub async fn handle(
    catalog: &Catalog,
    router: &Router,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let LambdaEvent { payload, context } = event;
    if is_scheduled_event(&payload) {
        let report = catalog.sweep(&SweepOptions::default()).await?;
        return Ok(serde_json::to_value(report)?);
    }
    let request: LambdaRequest = serde_json::from_value(payload).map_err(|e| {
        format!("the event is neither an API Gateway/ALB request nor a scheduled event: {e}")
    })?;
    // `Adapter` is what `lambda_http::run` itself uses to turn the router's response into the
    // response shape of the event's origin (HTTP API, REST API, ALB). It is public but hidden
    // from the docs; Cargo.lock pins it and tests/it/lambda/events.rs fails if it changes.
    let mut adapter = Adapter::from(router.clone());
    let response = adapter.call(LambdaEvent::new(request, context)).await?;
    Ok(serde_json::to_value(response)?)
}

pub async fn run(catalog: Catalog, router: Router) -> Result<(), Error> {
    let catalog = &catalog;
    let router = &router;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(catalog, router, event).await
    }))
    .await
}
