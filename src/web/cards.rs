//! What a list card shows of a stored entry, parsed once per stored version of it.
//!
//! Parsing the 20 entries of a list page was the largest part of its time (a profile of
//! `GET /?tag=gpu`: a fifth of the server's CPU), most of it skipping the metadata and config a
//! card does not show. The embedded store hands out the same shared bytes (`Bytes`) for an entry
//! until it is written (`store::entry_cache`), so a card parsed from those bytes stays right for as
//! long as they are the bytes handed out. The memo is keyed by the bytes' allocation, and holds a
//! reference to it: while a card is kept its allocation cannot be freed and reused for other text,
//! so the same address means the same text. A write makes new bytes: a new key, a new parse.
//!
//! Bytes that nothing else holds (DynamoDB's, and the embedded store's for entries it read by a
//! scan rather than from its cache) are freed with the page: they are parsed and not kept. At most
//! [`MAX_CARDS`] cards are kept, of entries up to [`MAX_CACHED_ENTRY`] bytes; when full, the memo
//! starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::domain::entry::{RegistryType, StorageType};
use crate::error::AppError;
use crate::health::HealthStatus;
use crate::store::StoredEntry;
use crate::store::entry_cache::MAX_CACHED_ENTRY;

/// Cards kept at most (a list page shows 20).
pub const MAX_CARDS: usize = 1024;

/// The fields of a stored entry that a card shows and the facets of a page count. Everything else
/// (metadata, config, the rest of the storage info and of the last probe) is skipped without being
/// built.
#[derive(Debug, serde::Deserialize)]
pub struct CardData {
    #[serde(rename = "container_registry_id")]
    pub id: String,
    #[serde(rename = "container_registry_name")]
    pub name: String,
    #[serde(rename = "container_registry_tags")]
    pub tags: Vec<String>,
    #[serde(rename = "container_registry_image_prefix")]
    pub image_prefix: String,
    #[serde(rename = "container_registry_storage_info")]
    pub storage: CardStorage,
    #[serde(rename = "container_registry_health", default)]
    pub health: Option<CardHealth>,
}

/// What a card shows of `container_registry_storage_info`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CardStorage {
    #[serde(default)]
    pub registry_type: Option<RegistryType>,
    #[serde(default)]
    pub storage_type: Option<StorageType>,
}

/// What a card shows of the last probe: its verdict and when it ran.
#[derive(Debug, serde::Deserialize)]
pub struct CardHealth {
    pub status: HealthStatus,
    pub checked_at: String,
}

impl CardData {
    /// Parses the card of a stored entry.
    pub fn parse(entry: &StoredEntry) -> Result<CardData, AppError> {
        serde_json::from_slice(&entry.json).map_err(|err| {
            AppError::Store(format!(
                "the stored entry {} is not readable: {err}",
                entry.id
            ))
        })
    }
}

/// Where the bytes of an entry live: the key of the memo (see the module's comment).
fn address(json: &Bytes) -> (usize, usize) {
    (json.as_ptr() as usize, json.len())
}

/// A card, and the bytes it was parsed from (held, so that their address stays theirs).
type Kept = (Bytes, Arc<CardData>);

/// See the module's comment.
#[derive(Default)]
pub struct CardMemo {
    kept: Mutex<HashMap<(usize, usize), Kept>>,
}

impl CardMemo {
    /// The card of each entry, parsed only for bytes not seen before.
    pub fn cards(&self, entries: &[StoredEntry]) -> Result<Vec<Arc<CardData>>, AppError> {
        // Bytes held only by this page cannot be in the memo (it holds what it keeps), and would
        // be freed with the page: no lookup, no keeping.
        let shared = |e: &StoredEntry| !e.json.is_unique();
        let mut found: Vec<Option<Arc<CardData>>> = if entries.iter().any(shared) {
            let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            entries
                .iter()
                .map(|e| kept.get(&address(&e.json)).map(|(_, c)| Arc::clone(c)))
                .collect()
        } else {
            vec![None; entries.len()]
        };
        let mut parsed = Vec::new();
        for (slot, entry) in found.iter_mut().zip(entries) {
            if slot.is_none() {
                let card = Arc::new(CardData::parse(entry)?);
                if entry.json.len() <= MAX_CACHED_ENTRY && shared(entry) {
                    parsed.push((entry.json.clone(), Arc::clone(&card)));
                }
                *slot = Some(card);
            }
        }
        if !parsed.is_empty() {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() + parsed.len() > MAX_CARDS {
                kept.clear();
            }
            for (json, card) in parsed {
                kept.insert(address(&json), (json, card));
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// Cards kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, name: &str) -> StoredEntry {
        let json = serde_json::json!({
            "container_registry_id": id,
            "container_registry_name": name,
            "container_registry_tags": ["a", "b\"q"],
            "container_registry_image_prefix": "10.0.0.1:5000",
            "container_registry_storage_info": {"registry_type": "aios", "storage_size": 5},
            "container_registry_metadata": {"owner": "x"},
        });
        StoredEntry {
            id: id.into(),
            json: Bytes::from(serde_json::to_vec(&json).unwrap()),
        }
    }

    #[test]
    fn the_same_bytes_are_parsed_once_and_new_bytes_again() {
        let memo = CardMemo::default();
        let e = stored("r1", "one");
        // Bytes held only by the page are not kept.
        memo.cards(std::slice::from_ref(&e)).unwrap();
        assert_eq!(memo.len(), 0);
        // Held elsewhere too (as the entry cache holds them): kept.
        let _cache = e.json.clone();
        let first = memo.cards(std::slice::from_ref(&e)).unwrap();
        assert_eq!(first[0].name, "one");
        assert_eq!(first[0].tags, ["a", "b\"q"]);
        assert_eq!(first[0].storage.registry_type, Some(RegistryType::Aios));
        let again = memo.cards(std::slice::from_ref(&e)).unwrap();
        assert!(
            Arc::ptr_eq(&first[0], &again[0]),
            "the same bytes: the kept card"
        );
        // The entry written anew: other bytes, with the same id and length even.
        let rewritten = stored("r1", "eno");
        let _cache2 = rewritten.json.clone();
        let after = memo.cards(&[rewritten]).unwrap();
        assert_eq!(after[0].name, "eno");
        assert_eq!(memo.len(), 2);
    }

    #[test]
    fn the_memo_is_bounded() {
        let memo = CardMemo::default();
        let mut held = Vec::new();
        for i in 0..(MAX_CARDS + 10) {
            let e = stored(&format!("r{i}"), "n");
            held.push(e.json.clone());
            memo.cards(&[e]).unwrap();
            assert!(memo.len() <= MAX_CARDS);
        }
    }

    #[test]
    fn an_unreadable_entry_is_an_error_naming_it() {
        let memo = CardMemo::default();
        let bad = StoredEntry {
            id: "broken".into(),
            json: Bytes::from_static(b"{\"container_registry_id\": 1}"),
        };
        match memo.cards(&[bad]) {
            Err(AppError::Store(detail)) => assert!(detail.contains("broken"), "{detail}"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("an unreadable entry made a card"),
        }
    }
}
