//! Owners: who may change an entry besides the operator.
//!
//! An owner is kept beside its entry, never inside the entry's JSON (a GET answers the stored JSON
//! as it is, so nothing inside it may be secret). What a store keeps is an *owner record*:
//! `sha256:<hex>` of an owner token, or `iam:<principal ARN>` for an entry created through an IAM
//! principal inside Lambda. Tokens themselves are never stored: they are shown once, to whoever
//! created (or rotated) the entry.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::entry::{OWNER, ValidationError};
use crate::error::AppError;
use crate::query::{Fields, Filter, QueryError, Update};

/// Every owner token starts with this, so that secret scanners can recognize a leaked one.
pub const TOKEN_PREFIX: &str = "rdbo_";
/// Random bytes in a token: 256 bits.
pub const TOKEN_RANDOM_BYTES: usize = 32;
/// Characters of a token: the prefix and the random bytes in unpadded base64url.
pub const TOKEN_CHARS: usize = TOKEN_PREFIX.len() + (TOKEN_RANDOM_BYTES * 4).div_ceil(3);

const TOKEN_RECORD: &str = "sha256:";
const PRINCIPAL_RECORD: &str = "iam:";

/// A freshly made owner token. Its `Debug` hides the secret, so it cannot end up in a log line by
/// accident.
pub struct OwnerToken(String);

impl std::fmt::Debug for OwnerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerToken(..)")
    }
}

impl OwnerToken {
    /// 256 bits from the operating system's random source.
    pub fn generate() -> OwnerToken {
        let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random source works");
        OwnerToken(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The token, for the one answer that shows it.
    pub fn reveal(self) -> String {
        self.0
    }

    /// What the store keeps for this token.
    pub fn record(&self) -> String {
        token_record(&self.0)
    }
}

/// The owner record of a token: its SHA-256. A plain hash suffices (no salt, no slow KDF): a
/// token is 256 random bits, so there is nothing to guess.
pub fn token_record(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(TOKEN_RECORD.len() + 64);
    out.push_str(TOKEN_RECORD);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The owner record of an IAM principal.
pub fn principal_record(arn: &str) -> String {
    format!("{PRINCIPAL_RECORD}{arn}")
}

/// Longest IAM principal ARN a record may hold (AWS caps role ARNs well below this).
const MAX_PRINCIPAL_CHARS: usize = 2048;

/// True for text shaped like an owner record as the service writes them: `sha256:` and 64
/// lowercase hex digits, or `iam:` and an ARN of printable ASCII. What `import --exact` accepts.
pub fn is_owner_record(record: &str) -> bool {
    if let Some(hex) = record.strip_prefix(TOKEN_RECORD) {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    } else if let Some(arn) = record.strip_prefix(PRINCIPAL_RECORD) {
        arn.starts_with("arn:")
            && arn.len() <= MAX_PRINCIPAL_CHARS
            && arn.bytes().all(|b| b.is_ascii_graphic())
    } else {
        false
    }
}

/// True for text shaped like an owner token: the prefix, then exactly the base64url characters
/// of 32 bytes.
pub fn is_owner_token(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Who is asking for a write, as far as ownership goes.
#[derive(Clone, PartialEq, Eq)]
pub enum Caller {
    /// May change every entry: the write policy lets anyone, or the caller is the operator.
    Operator,
    /// Carries an owner token (checked against the entry's record).
    Token(String),
    /// An IAM principal that is not one of the operators (inside Lambda behind IAM auth).
    Principal(String),
    /// No credentials at all.
    Anonymous,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Operator => f.write_str("Operator"),
            Caller::Token(_) => f.write_str("Token(..)"),
            Caller::Principal(arn) => write!(f, "Principal({arn})"),
            Caller::Anonymous => f.write_str("Anonymous"),
        }
    }
}

impl Caller {
    /// Whether this caller may change an entry whose owner record is `owner` (`None`: no owner,
    /// the operator's only). `Ok(None)`: yes, unconditionally (the operator). `Ok(Some(record))`:
    /// yes, as long as the entry is still owned by `record` when the write lands (the store
    /// checks that in the same conditional write, so a rotation in between wins).
    pub fn may_change(&self, owner: Option<&str>) -> Result<Option<String>, AppError> {
        let forbidden = || AppError::Forbidden {
            code: "forbidden",
            message: match owner {
                None => "this entry has no owner: only the operator may change it".into(),
                Some(_) => "these credentials do not own this entry".into(),
            },
        };
        match self {
            Caller::Operator => Ok(None),
            Caller::Anonymous => Err(AppError::Unauthorized),
            Caller::Token(token) => match owner {
                Some(record) if token_owns(token, record) => Ok(Some(record.to_string())),
                _ => Err(forbidden()),
            },
            Caller::Principal(arn) => match owner {
                Some(record) if record.strip_prefix(PRINCIPAL_RECORD) == Some(arn.as_str()) => {
                    Ok(Some(record.to_string()))
                }
                _ => Err(forbidden()),
            },
        }
    }
}

/// Whether `token` is the one whose record is `record`, comparing the hashes in constant time.
pub fn token_owns(token: &str, record: &str) -> bool {
    if !record.starts_with(TOKEN_RECORD) {
        return false;
    }
    let given = token_record(token);
    given.len() == record.len() && bool::from(given.as_bytes().ct_eq(record.as_bytes()))
}

/// Filters cannot read owner records (a DynamoDB pushdown on them would answer questions about a
/// hash): a filter that names the field is a 400, as for a write of a managed field.
pub fn refuse_owner_field(filter: &Filter) -> Result<(), AppError> {
    if Fields::of(filter).contains(OWNER) {
        return Err(QueryError::InvalidFilter(format!(
            "{OWNER} is managed by the server and cannot be queried"
        ))
        .into());
    }
    Ok(())
}

/// Updates cannot touch the owner record, not even an `$unset` (which would otherwise do nothing,
/// silently): a 400 naming the field, as for the other managed fields.
pub fn refuse_owner_update(update: &Update) -> Result<(), AppError> {
    if update
        .paths()
        .any(|p| p == OWNER || p.strip_prefix(OWNER).is_some_and(|r| r.starts_with('.')))
    {
        return Err(
            ValidationError::new(OWNER, "is managed by the server and cannot be written").into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_prefixed_and_kept_as_hashes() {
        let a = OwnerToken::generate();
        let b = OwnerToken::generate();
        let record = a.record();
        assert_eq!(record.len(), TOKEN_RECORD.len() + 64);
        let (a, b) = (a.reveal(), b.reveal());
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_CHARS);
        assert!(is_owner_token(&a), "{a}");
        assert!(!record.contains(&a[TOKEN_PREFIX.len()..]));
        assert!(token_owns(&a, &record));
        assert!(!token_owns(&b, &record));
        assert!(!token_owns(&a, &principal_record(&a)));
    }

    #[test]
    fn malformed_tokens_are_recognized() {
        let good = OwnerToken::generate().reveal();
        assert!(!is_owner_token(&good[..TOKEN_CHARS - 1]));
        assert!(!is_owner_token(&format!("{good}A")));
        assert!(!is_owner_token(&good.replacen("rdbo_", "rdbx_", 1)));
        assert!(!is_owner_token(&format!("{}!", &good[..TOKEN_CHARS - 1])));
    }

    #[test]
    fn who_may_change_what() {
        let token = OwnerToken::generate();
        let record = token.record();
        let token = token.reveal();
        assert_eq!(Caller::Operator.may_change(None).unwrap(), None);
        assert_eq!(
            Caller::Token(token.clone())
                .may_change(Some(&record))
                .unwrap(),
            Some(record.clone())
        );
        assert!(Caller::Token(token.clone()).may_change(None).is_err());
        assert!(matches!(
            Caller::Anonymous.may_change(Some(&record)),
            Err(AppError::Unauthorized)
        ));
        let arn = "arn:aws:iam::123456789012:user/alice";
        assert!(
            Caller::Principal(arn.into())
                .may_change(Some(&principal_record(arn)))
                .is_ok()
        );
        assert!(
            Caller::Principal("arn:aws:iam::123456789012:user/bob".into())
                .may_change(Some(&principal_record(arn)))
                .is_err()
        );
        assert!(!format!("{:?}", Caller::Token(token.clone())).contains(&token));
    }
}
