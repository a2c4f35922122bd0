//! Verification (API.md, "Verification"): proof that whoever listed a registry controls it. The
//! service hands out a challenge; its holder pushes any OCI manifest to
//! `<image prefix>/registry-db-verification:<tag>` whose annotations hold
//! `io.registry-db.challenge: <challenge>`; the service reads it back anonymously.
//!
//! This module is the rules, with no store and no HTTP: a [`Challenge`] (256 random bits, shown
//! once), the [`ChallengeRecord`] a store keeps (its SHA-256, the entry, the tag, the expiry),
//! [`ChallengeRecord::check`] of an offered challenge, [`proof_matches`] on the manifest read, and
//! [`Verification`], the value of the managed field `container_registry_verified`. Each refusal
//! is a [`Refused`] naming its rule.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every challenge starts with this (secret scanners can tell it from an owner token's `rdbo_`).
pub const CHALLENGE_PREFIX: &str = "rdbv_";
/// Random bytes in a challenge: 256 bits.
pub const CHALLENGE_RANDOM_BYTES: usize = 32;
/// Characters of a challenge.
pub const CHALLENGE_CHARS: usize =
    CHALLENGE_PREFIX.len() + (CHALLENGE_RANDOM_BYTES * 4).div_ceil(3);
/// How long a challenge may be used.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(3600);
/// The repository, under the entry's image prefix, that holds the proof.
pub const PROOF_REPOSITORY: &str = "registry-db-verification";
/// The annotation that carries the challenge.
pub const ANNOTATION: &str = "io.registry-db.challenge";
/// Sweeps that miss the proof in a row before the verification is removed.
pub const MISSES_TO_REMOVE: u8 = 2;

/// A refusal, naming its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (rule {rule})")]
pub struct Refused {
    pub rule: &'static str,
    pub message: String,
}

fn refused(rule: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        rule,
        message: message.into(),
    }
}

/// A fresh challenge. `Debug` hides the secret.
pub struct Challenge {
    secret: String,
    pub tag: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("tag", &self.tag)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source works");
    bytes
}

impl Challenge {
    /// 256 random bits, and a random tag of its own (so the tag says nothing of the secret),
    /// valid for [`CHALLENGE_TTL`] from `now`.
    pub fn generate(now: DateTime<Utc>) -> Challenge {
        let tag: String = random::<8>().iter().map(|b| format!("{b:02x}")).collect();
        Challenge {
            secret: format!(
                "{CHALLENGE_PREFIX}{}",
                URL_SAFE_NO_PAD.encode(random::<32>())
            ),
            tag: format!("c-{tag}"),
            expires_at: now
                + chrono::Duration::from_std(CHALLENGE_TTL)
                    .expect("the TTL fits a chrono duration"),
        }
    }

    /// The challenge, for the one answer that shows it.
    pub fn reveal(&self) -> &str {
        &self.secret
    }

    /// What a store keeps for it.
    pub fn record(&self, entry_id: &str) -> ChallengeRecord {
        ChallengeRecord {
            hash: challenge_hash(&self.secret),
            entry_id: entry_id.to_owned(),
            tag: self.tag.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// `sha256:<hex>` of a challenge: a plain hash suffices, a challenge is 256 random bits.
pub fn challenge_hash(challenge: &str) -> String {
    let digest = Sha256::digest(challenge.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What a store keeps of a challenge: never the challenge itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    pub hash: String,
    pub entry_id: String,
    pub tag: String,
    pub expires_at: DateTime<Utc>,
}

impl ChallengeRecord {
    /// Whether `offered` is this challenge, for this entry, before its expiry. Single use is the
    /// store's part: it hands a record out once (a conditional delete).
    pub fn check(&self, offered: &str, entry_id: &str, now: DateTime<Utc>) -> Result<(), Refused> {
        if !is_challenge(offered) {
            return Err(refused(
                "challenge-format",
                format!(
                    "a challenge is {CHALLENGE_PREFIX} and 43 base64url characters, as POST /container_registry/{{id}}/verification answered it"
                ),
            ));
        }
        let same: bool = challenge_hash(offered)
            .as_bytes()
            .ct_eq(self.hash.as_bytes())
            .into();
        if !same {
            return Err(refused(
                "challenge-unknown",
                "this challenge was not issued, or was used already",
            ));
        }
        if self.entry_id != entry_id {
            return Err(refused(
                "challenge-entry",
                "this challenge was issued for another entry",
            ));
        }
        if now >= self.expires_at {
            return Err(refused(
                "challenge-expired",
                format!(
                    "this challenge expired at {}; ask for a new one",
                    self.expires_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        Ok(())
    }
}

/// True for text shaped like a challenge.
pub fn is_challenge(text: &str) -> bool {
    text.len() == CHALLENGE_CHARS
        && text.starts_with(CHALLENGE_PREFIX)
        && text[CHALLENGE_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a proof manifest's annotations carry `challenge` under [`ANNOTATION`] (compared in
/// constant time).
pub fn proof_matches(
    annotations: &BTreeMap<String, String>,
    challenge: &str,
) -> Result<(), Refused> {
    let Some(found) = annotations.get(ANNOTATION) else {
        return Err(refused(
            "proof-annotation",
            format!("the proof manifest has no {ANNOTATION} annotation"),
        ));
    };
    let same: bool = found.as_bytes().ct_eq(challenge.as_bytes()).into();
    if same {
        Ok(())
    } else {
        Err(refused(
            "proof-annotation",
            format!("the proof manifest's {ANNOTATION} annotation is not this challenge"),
        ))
    }
}

/// The managed field `container_registry_verified`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verification {
    /// When the proof was read, RFC 3339 UTC.
    pub verified_at: String,
    /// The proof's reference: `<image prefix>/registry-db-verification:<tag>`.
    pub reference: String,
    /// The proof manifest's digest.
    pub digest: String,
}

/// What a sweep does with a verified entry, given whether it found the proof and how many sweeps
/// in a row missed it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepVerdict {
    /// Found: the misses start over.
    Keep,
    /// Missed, `n` in a row now.
    Missed(u8),
    /// Missed [`MISSES_TO_REMOVE`] in a row: the verification goes.
    Remove,
}

pub fn after_sweep(found: bool, misses_before: u8) -> SweepVerdict {
    if found {
        return SweepVerdict::Keep;
    }
    let misses = misses_before.saturating_add(1);
    if misses >= MISSES_TO_REMOVE {
        SweepVerdict::Remove
    } else {
        SweepVerdict::Missed(misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_is_random_hashed_and_hidden() {
        let now = Utc::now();
        let (a, b) = (Challenge::generate(now), Challenge::generate(now));
        assert_ne!(a.reveal(), b.reveal());
        assert_ne!(a.tag, b.tag);
        assert!(is_challenge(a.reveal()), "{}", a.reveal());
        assert!(!format!("{a:?}").contains(a.reveal()));
        let record = a.record("e1");
        assert!(!serde_json::to_string(&record).unwrap().contains(a.reveal()));
        assert_eq!(record.hash, challenge_hash(a.reveal()));
        assert_eq!(a.expires_at - now, chrono::Duration::seconds(3600));
        assert!(
            crate::health::ImageRef::with_target(
                PROOF_REPOSITORY,
                crate::health::Target::Tag(a.tag.clone())
            )
            .is_ok()
        );
    }

    #[test]
    fn a_challenge_is_checked_for_itself_its_entry_and_its_expiry() {
        let now = Utc::now();
        let c = Challenge::generate(now);
        let record = c.record("e1");
        assert_eq!(record.check(c.reveal(), "e1", now), Ok(()));
        let other = Challenge::generate(now);
        for (offered, entry, at, rule) in [
            (other.reveal(), "e1", now, "challenge-unknown"),
            (c.reveal(), "e2", now, "challenge-entry"),
            (c.reveal(), "e1", c.expires_at, "challenge-expired"),
            ("rdbv_short", "e1", now, "challenge-format"),
            ("", "e1", now, "challenge-format"),
        ] {
            let err = record.check(offered, entry, at).unwrap_err();
            assert_eq!(err.rule, rule, "{err}");
            assert!(err.to_string().contains(rule));
        }
    }

    #[test]
    fn the_proof_must_carry_the_challenge() {
        let c = Challenge::generate(Utc::now());
        let mut a = BTreeMap::new();
        assert_eq!(
            proof_matches(&a, c.reveal()).unwrap_err().rule,
            "proof-annotation"
        );
        a.insert(ANNOTATION.to_owned(), "rdbv_wrong".to_owned());
        assert!(
            proof_matches(&a, c.reveal())
                .unwrap_err()
                .message
                .contains("not this challenge")
        );
        a.insert(ANNOTATION.to_owned(), c.reveal().to_owned());
        assert_eq!(proof_matches(&a, c.reveal()), Ok(()));
    }

    #[test]
    fn two_misses_in_a_row_remove_a_verification() {
        assert_eq!(after_sweep(true, 1), SweepVerdict::Keep);
        assert_eq!(after_sweep(false, 0), SweepVerdict::Missed(1));
        assert_eq!(after_sweep(false, 1), SweepVerdict::Remove);
        assert_eq!(after_sweep(true, 0), SweepVerdict::Keep);
    }
}
