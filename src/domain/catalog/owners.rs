//! The catalog's owner operations: who may change an entry, creating an owned entry, rotating
//! its token. Tokens, records and the rules are `domain::owner`'s.

use super::Catalog;
use crate::domain::entry::{ContainerRegistry, validate_id};
use crate::domain::owner::{Caller, OwnerToken};
use crate::error::AppError;

impl Catalog {
    /// Whether `caller` may change entry `id` now (see [`Caller::may_change`]); the operator is
    /// answered without reading the store.
    pub(crate) async fn may_change(
        &self,
        id: &str,
        caller: &Caller,
    ) -> Result<Option<String>, AppError> {
        match caller {
            Caller::Operator => return Ok(None),
            // Before the store is read: no credentials is a 401 whether or not the id exists.
            Caller::Anonymous => return Err(AppError::Unauthorized),
            _ => {}
        }
        let owner = self
            .store
            .owner(id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_string()))?;
        caller.may_change(owner.as_deref())
    }

    /// Creates an entry owned by `owner` (a record: [`OwnerToken::record`] or
    /// [`principal_record`]), or by nobody.
    pub async fn create_owned(
        &self,
        body: serde_json::Value,
        owner: Option<&str>,
    ) -> Result<ContainerRegistry, AppError> {
        let entry = ContainerRegistry::from_create(body)?;
        self.store.insert_owned(&entry, owner).await?;
        Ok(entry)
    }

    /// Gives entry `id` a new owner token, revoking the one it had (the caller must own the entry,
    /// or be the operator). Of concurrent rotations exactly one wins: each is conditional on the
    /// record it read, and the others answer 409.
    pub async fn rotate_owner(&self, id: &str, caller: &Caller) -> Result<OwnerToken, AppError> {
        validate_id(id).map_err(|_| AppError::NotFound(id.to_string()))?;
        if *caller == Caller::Anonymous {
            return Err(AppError::Unauthorized);
        }
        let current = self
            .store
            .owner(id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_string()))?;
        caller.may_change(current.as_deref())?;
        let token = OwnerToken::generate();
        if self
            .store
            .set_owner(id, current.as_deref(), &token.record())
            .await?
        {
            Ok(token)
        } else {
            Err(AppError::Conflict(
                "the owner token of this entry was rotated by another request at the same time; that one won".into(),
            ))
        }
    }

    /// Whether entry `id` has an owner (for the page, which shows that and nothing more).
    pub async fn has_owner(&self, id: &str) -> Result<bool, AppError> {
        Ok(matches!(self.store.owner(id).await?, Some(Some(_))))
    }
}
