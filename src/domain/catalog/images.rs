//! Image lookups: does an entry's registry serve `NAME:TAG` (or `NAME@DIGEST`), with which digest.
//! Rationed like health checks: an answer is kept for the probe cooldown per (entry, reference,
//! platforms), concurrent lookups of one key share one read (single flight), every read takes one
//! of the prober's slots (a 429 when none frees up in time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::{Catalog, check_path_id};
use crate::domain::store::StoredEntry;
use crate::error::AppError;
use crate::health::{ImageLookup, ImageRef, ImageStatus, Read};
use crate::query::Filter;

/// Lookups kept at most; past it expired ones go first, then all of them.
pub const MAX_KEPT_LOOKUPS: usize = 4096;
/// Registries one `POST /container_registries/images` asks at most.
pub const MAX_IMAGE_BATCH: usize = 20;

type Key = (String, String, bool);
type LookupFlight = Shared<BoxFuture<'static, Result<ImageLookup, LookupFailure>>>;

#[derive(Debug, Clone)]
enum LookupFailure {
    NotFound(String),
    BadReference(String),
    Busy {
        max_in_flight: usize,
        retry_after_secs: u64,
    },
    Store(String),
    Internal(String),
}

impl From<LookupFailure> for AppError {
    fn from(f: LookupFailure) -> Self {
        match f {
            LookupFailure::NotFound(id) => AppError::NotFound(id),
            LookupFailure::BadReference(message) => AppError::BadRequest {
                code: "invalid_reference",
                message,
            },
            LookupFailure::Busy {
                max_in_flight,
                retry_after_secs,
            } => AppError::TooManyProbes {
                max_in_flight,
                retry_after_secs,
            },
            LookupFailure::Store(m) => AppError::Store(m),
            LookupFailure::Internal(m) => AppError::Internal(m),
        }
    }
}

/// Kept answers and the reads in progress.
#[derive(Default)]
pub(super) struct ImageLookups {
    kept: Mutex<HashMap<Key, (Instant, ImageLookup)>>,
    flights: Mutex<HashMap<Key, LookupFlight>>,
}

/// The answer to one lookup.
#[derive(Debug, Clone)]
pub struct ImageCheck {
    pub lookup: ImageLookup,
    /// Set when a kept answer was given (within the cooldown): how old it is.
    pub cached_age: Option<Duration>,
}

/// One registry's answer in a batch.
#[derive(Debug, Clone)]
pub struct ImageBatchItem {
    pub id: String,
    pub name: String,
    pub lookup: ImageLookup,
}

impl Catalog {
    /// Whether the entry's registry serves `image` (`platforms`: read an index's platforms).
    pub async fn lookup_image(
        &self,
        id: &str,
        image: &ImageRef,
        platforms: bool,
    ) -> Result<ImageCheck, AppError> {
        check_path_id(id)?;
        let key: Key = (id.to_owned(), image.to_string(), platforms);
        let cooldown = self.checks.cooldown;
        if let Some((at, lookup)) = self
            .images
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < cooldown
        {
            return Ok(ImageCheck {
                lookup: lookup.clone(),
                cached_age: Some(at.elapsed()),
            });
        }
        let flight = {
            let mut flights = self
                .images
                .flights
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match flights.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let f = self.start_lookup(key.clone(), image.clone());
                    flights.insert(key.clone(), f.clone());
                    f
                }
            }
        };
        let lookup = flight.await.map_err(AppError::from)?;
        Ok(ImageCheck {
            lookup,
            cached_age: None,
        })
    }

    fn start_lookup(&self, key: Key, image: ImageRef) -> LookupFlight {
        let (catalog, k) = (self.clone(), key.clone());
        let task = tokio::spawn(async move {
            let _leave = Leave {
                lookups: Arc::clone(&catalog.images),
                key: k.clone(),
            };
            let result = catalog.lookup_once(&k.0, &image, k.2).await;
            if let Ok(lookup) = &result
                && !catalog.checks.cooldown.is_zero()
            {
                let mut kept = catalog
                    .images
                    .kept
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if kept.len() >= MAX_KEPT_LOOKUPS {
                    let cooldown = catalog.checks.cooldown;
                    kept.retain(|_, (at, _)| at.elapsed() < cooldown);
                    if kept.len() >= MAX_KEPT_LOOKUPS {
                        kept.clear();
                    }
                }
                kept.insert(k, (Instant::now(), lookup.clone()));
            }
            result
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(LookupFailure::Internal(format!("image lookup task: {e}"))))
        }
        .boxed()
        .shared()
    }

    async fn lookup_once(
        &self,
        id: &str,
        image: &ImageRef,
        platforms: bool,
    ) -> Result<ImageLookup, LookupFailure> {
        let entry = self
            .store
            .get(id)
            .await
            .map_err(|e| LookupFailure::Store(e.to_string()))?
            .ok_or_else(|| LookupFailure::NotFound(id.to_owned()))?
            .entry()
            .map_err(|e| LookupFailure::Store(e.to_string()))?;
        let prefix = &entry.container_registry_image_prefix;
        let repository = image
            .repository(prefix)
            .map_err(|e| LookupFailure::BadReference(e.0))?;
        let read = if platforms {
            Read::Platforms
        } else {
            Read::Head
        };
        let result = self
            .prober
            .read_manifest_within(
                &entry.container_registry_public_url,
                &repository,
                image.target(),
                read,
                self.checks.slot_wait,
            )
            .await
            .map_err(|busy| LookupFailure::Busy {
                max_in_flight: busy.max_in_flight,
                retry_after_secs: self.prober.config().timeout.as_secs_f64().ceil().max(1.0) as u64,
            })?;
        Ok(ImageLookup::from_read(image.pull_reference(prefix), result))
    }

    /// The lookup on every entry of one page of `filter` (at most [`MAX_IMAGE_BATCH`]), at once.
    pub async fn lookup_images(
        &self,
        filter: &Filter,
        image: &ImageRef,
        platforms: bool,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<ImageBatchItem>, Option<String>), AppError> {
        let page = self
            .query(filter, limit.clamp(1, MAX_IMAGE_BATCH), cursor)
            .await?;
        let lookups = page.entries.iter().map(|stored: &StoredEntry| async move {
            let entry = stored.entry().map_err(AppError::from)?;
            let lookup = match self.lookup_image(&stored.id, image, platforms).await {
                Ok(check) => check.lookup,
                // An image name that cannot live under this entry's prefix: not there.
                Err(AppError::BadRequest { message, .. }) => ImageLookup {
                    reference: image.pull_reference(&entry.container_registry_image_prefix),
                    status: ImageStatus::NotFound,
                    digest: None,
                    media_type: None,
                    platforms: None,
                    checked_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    error: Some(message),
                    refused_by: None,
                },
                Err(AppError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            Ok(Some(ImageBatchItem {
                id: entry.container_registry_id,
                name: entry.container_registry_name,
                lookup,
            }))
        });
        let items = futures::future::join_all(lookups)
            .await
            .into_iter()
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>, AppError>>()?;
        Ok((items, page.next_cursor))
    }
}

struct Leave {
    lookups: Arc<ImageLookups>,
    key: Key,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.lookups
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}
