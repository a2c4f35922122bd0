//! Reading a verification proof (`domain::verification` holds the rules): the manifest at
//! `<image prefix>/registry-db-verification:<tag>`, read anonymously through the OCI client, must
//! carry the challenge. Storing challenges (single use) and the managed field is not wired yet.

use chrono::Utc;

use super::{Catalog, check_path_id};
use crate::domain::verification::{
    ChallengeRecord, PROOF_REPOSITORY, Refused, Verification, proof_matches,
};
use crate::error::AppError;
use crate::health::{ImageRef, ImageStatus, Read, Target};

impl From<Refused> for AppError {
    fn from(r: Refused) -> Self {
        let message = r.to_string();
        AppError::BadRequest {
            code: r.rule,
            message,
        }
    }
}

impl Catalog {
    /// Checks `challenge` against `record` (issued for entry `id`, not expired), then reads the
    /// proof from the entry's registry. A refusal is a 400 whose code is the rule.
    pub async fn read_proof(
        &self,
        id: &str,
        record: &ChallengeRecord,
        challenge: &str,
    ) -> Result<Verification, AppError> {
        check_path_id(id)?;
        record.check(challenge, id, Utc::now())?;
        let entry = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_owned()))?
            .entry()?;
        let prefix = &entry.container_registry_image_prefix;
        let proof = ImageRef::with_target(PROOF_REPOSITORY, Target::Tag(record.tag.clone()))
            .map_err(|e| AppError::Internal(e.0))?;
        let repository = proof.repository(prefix).map_err(|e| AppError::BadRequest {
            code: "invalid_reference",
            message: e.0,
        })?;
        let read = self
            .prober
            .read_manifest_within(
                &entry.container_registry_public_url,
                &repository,
                proof.target(),
                Read::Annotations,
                self.checks.slot_wait,
            )
            .await
            .map_err(|busy| AppError::TooManyProbes {
                max_in_flight: busy.max_in_flight,
                retry_after_secs: self.prober.config().timeout.as_secs_f64().ceil().max(1.0) as u64,
            })?;
        let reference = proof.pull_reference(prefix);
        match read.status {
            ImageStatus::Found => {
                proof_matches(&read.annotations.unwrap_or_default(), challenge)?;
                Ok(Verification {
                    verified_at: read.checked_at,
                    reference,
                    digest: read.digest.unwrap_or_default(),
                })
            }
            ImageStatus::NotFound => Err(Refused {
                rule: "proof-not-found",
                message: format!("no proof at {reference}: push a manifest there first"),
            }
            .into()),
            status => Err(Refused {
                rule: "proof-unreadable",
                message: format!(
                    "the proof at {reference} could not be read anonymously ({status}): {}",
                    read.error.unwrap_or_default()
                ),
            }
            .into()),
        }
    }
}
