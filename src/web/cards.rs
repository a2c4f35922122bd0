//! What a list card shows of a stored entry, parsed once per stored version of it.
//!
//! Parsing the 20 entries of a list page was the largest part of its time (a profile of
//! `GET /?tag=gpu`: a fifth of the server's CPU), most of it skipping the metadata and config a
//! card does not show. The memo keeps, by entry id, the card and a copy of the text it was parsed
//! from; a card is reused only for the same text, byte for byte (comparing a kilobyte costs far
//! less than parsing it). A write makes new text: a new parse. This works the same on both stores,
//! whichever buffers their answers come in.
//!
//! At most [`MAX_CARDS`] cards are kept, of entries up to [`MAX_CACHED_ENTRY`] bytes; when full,
//! the memo starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::domain::entry::{RegistryType, StorageType};
use crate::domain::store::MAX_CACHED_ENTRY;
use crate::domain::store::{StoredEntry, unreadable};
use crate::error::AppError;
use crate::health::HealthStatus;

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
    #[serde(default)]
    pub uptime_30d: Option<f64>,
}

impl CardData {
    /// Parses the card of a stored entry.
    pub fn parse(entry: &StoredEntry) -> Result<CardData, AppError> {
        serde_json::from_slice(&entry.json).map_err(|err| unreadable(&entry.id, err).into())
    }
}

/// A card, and the text it was parsed from.
type Kept = (Bytes, Arc<CardData>);

/// See the module's comment.
#[derive(Default)]
pub struct CardMemo {
    kept: Mutex<HashMap<Box<str>, Kept>>,
}

impl CardMemo {
    /// The card of each entry, parsed only for text not seen before.
    pub fn cards(&self, entries: &[StoredEntry]) -> Result<Vec<Arc<CardData>>, AppError> {
        let mut found: Vec<Option<Arc<CardData>>> = {
            let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            entries
                .iter()
                .map(|e| {
                    let (json, card) = kept.get(&*e.id)?;
                    (*json == e.json).then(|| Arc::clone(card))
                })
                .collect()
        };
        let mut parsed = Vec::new();
        for (slot, entry) in found.iter_mut().zip(entries) {
            if slot.is_none() {
                let card = Arc::new(CardData::parse(entry)?);
                if entry.json.len() <= MAX_CACHED_ENTRY {
                    parsed.push((entry, Arc::clone(&card)));
                }
                *slot = Some(card);
            }
        }
        if !parsed.is_empty() {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() + parsed.len() > MAX_CARDS {
                kept.clear();
            }
            for (entry, card) in parsed {
                // A copy: the entry's bytes may be a slice of a whole chunk's buffer.
                let json = Bytes::copy_from_slice(&entry.json);
                kept.insert(Box::from(&*entry.id), (json, card));
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
    fn the_same_text_is_parsed_once_and_new_text_again() {
        let memo = CardMemo::default();
        let e = stored("r1", "one");
        let first = memo.cards(std::slice::from_ref(&e)).unwrap();
        assert_eq!(first[0].name, "one");
        assert_eq!(first[0].tags, ["a", "b\"q"]);
        assert_eq!(first[0].storage.registry_type, Some(RegistryType::Aios));
        // The same text in other bytes (another read of the entry): the kept card.
        let reread = StoredEntry {
            id: e.id.clone(),
            json: Bytes::copy_from_slice(&e.json),
        };
        let again = memo.cards(&[reread]).unwrap();
        assert!(
            Arc::ptr_eq(&first[0], &again[0]),
            "the same text: the kept card"
        );
        // The entry written anew: other text, with the same id and length even.
        let rewritten = stored("r1", "eno");
        let after = memo.cards(&[rewritten]).unwrap();
        assert_eq!(after[0].name, "eno");
        assert!(!Arc::ptr_eq(&first[0], &after[0]));
        assert_eq!(memo.len(), 1);
        let back = memo.cards(std::slice::from_ref(&e)).unwrap();
        assert_eq!(back[0].name, "one");
    }

    #[test]
    fn the_memo_is_bounded() {
        let memo = CardMemo::default();
        for i in 0..(MAX_CARDS + 10) {
            let e = stored(&format!("r{i}"), "n");
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
