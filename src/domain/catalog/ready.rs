//! Readiness: whether the store answers. `/healthz` says the process is up; this says it can serve.

use std::time::Duration;

use super::Catalog;
use crate::error::AppError;

/// A readiness check that has no answer from the store within this long fails (a store that
/// hangs is as unready as one that refuses; the SDK's own retries would otherwise take longer).
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The id a readiness check reads: a plain key lookup, which every store and IAM policy that
/// serves GETs allows; whether the entry exists does not matter.
const READY_PROBE_ID: &str = "registry-db-readiness-check";

impl Catalog {
    /// `Ok` when the store answered a read within [`READY_TIMEOUT`]; `AppError::Store` otherwise.
    pub async fn ready(&self) -> Result<(), AppError> {
        match tokio::time::timeout(READY_TIMEOUT, self.store().get(READY_PROBE_ID)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(AppError::Store(format!(
                "the store did not answer a read within {} s",
                READY_TIMEOUT.as_secs()
            ))),
        }
    }
}
