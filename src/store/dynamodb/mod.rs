//! The DynamoDB store. Three tables:
//! - the entries table, one item per entry, keyed by `container_registry_id` (the key schema
//!   `template.yaml` declares);
//! - the tag index table, one small item per tag an entry carries, keyed by `tag` (partition) and
//!   `container_registry_id` (sort), so `Query` lists the entries that carry a tag in id order.
//! - the health history table, one item per entry and UTC day (`container_registry_id`, `day`),
//!   counted with `UpdateItem` `ADD`s and expiring by TTL (`domain::history`).
//!
//! Every write of an entry and its index items is one `TransactWriteItems` with a condition on the
//! entry: create requires the id to be absent, replace and delete require the version that was read.
//! An entry's index items are therefore exactly its tags, except in two rare cases that leave an
//! extra item (a legacy entry with more tags than one transaction holds, and `reindex` racing an
//! update): an extra item only costs a wasted read, because every item a query reads from this
//! store is evaluated against the whole filter. A missing index item never happens.
//!
//! Faults: the SDK retries what is transient (throttling, 5xx, timeouts, broken connections) within
//! the limits of [`retry_config`] and [`timeout_config`]. A retried write may have applied already
//! (its answer was lost), so every transaction carries a `ClientRequestToken`, one per logical
//! write: DynamoDB answers a repeat of it as the first attempt's success without writing again.
//! (The SDK would fill in one per call by itself; ours also spans our own retries of a request
//! still in progress, and is renewed only after DynamoDB said the request wrote nothing.)
//! Should the condition on the entry still fail after a write was sent more than once (the token
//! outlived, or an endpoint that ignores it), the entry is read back and the write counts as done
//! when what is stored is what it wrote.
//!
//! Queries the tag index can serve read it with `Query` and fetch the entries with `BatchGetItem`;
//! other queries are Scans with as much of the filter as DynamoDB can express pushed down as a
//! `FilterExpression` (see `filter.rs`).

pub mod filter;
mod http;

pub use self::http::sdk_http_client;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest,
    KeySchemaElement, KeyType, KeysAndAttributes, Put, PutRequest, ReturnConsumedCapacity,
    ScalarAttributeType, TableStatus, TransactWriteItem, Update, WriteRequest,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use serde_dynamo::aws_sdk_dynamodb_1 as dynamo;

use self::filter::TranslateOptions;
use super::plan::{Plan, Posting, TagPlan, Term, merge, storable_tag};
use super::{Exported, ReindexReport, ScanChunk, ScanRequest, Store, StoreError, StoredEntry};
use crate::domain::counts::{self, CountDelta, CountReader, KeptCounts, Recount};
use crate::domain::entry::{ContainerRegistry, HEALTH, ID, OWNER, PUBLIC_URL, TAGS, VERSION};
use crate::domain::history::{Day, DayCounts, KEPT_DAYS, ProbeSample, bucket_of};
use crate::domain::store::ReindexProgress;
use crate::domain::store::{LastHealth, ProbeTarget};
use crate::health::{HealthStatus, ProbeResult};

/// The partition key attribute of the entries table, also the entry's id field.
pub const KEY: &str = ID;
/// The partition key of the tag index table (its sort key is [`KEY`]).
pub const TAG: &str = "tag";
/// The tag index table's name when none is configured: the entries table's, suffixed.
pub fn default_tag_table(table: &str) -> String {
    format!("{table}-tags")
}

/// The health history table's name when none is configured: the entries table's, suffixed.
pub fn default_history_table(table: &str) -> String {
    format!("{table}-history")
}

/// The sort key of the history table (its partition key is [`KEY`]): the UTC day, `YYYY-MM-DD`.
pub const DAY: &str = "day";
/// The history item attribute DynamoDB's TTL reads: the day's end of keeping, in epoch seconds.
pub const EXPIRES_AT: &str = "expires_at";
/// A history item's latency bucket `i` is the attribute `l{i}`.
fn bucket_attr(i: usize) -> String {
    format!("l{i}")
}

/// The index item that says the index is complete: its partition is longer than any tag may be, so
/// it never mixes with a tag's list.
const INDEX_MARKER_TAG: &str =
    "registry-db: the tag index is complete (not a tag: longer than a tag may be)";
const INDEX_MARKER_ID: &str = "index";
/// Beside it, the item that says the kept counts cover every entry.
const COUNTS_MARKER_ID: &str = "counts";
/// How long a store that found its index incomplete scans before looking again.
const INDEX_RECHECK: Duration = Duration::from_secs(30);

/// Kept counts (`domain::counts`) live in the tag index table too, in [`COUNT_SHARDS`] partitions
/// whose keys are longer than any tag: one item per tag counter (sort key `t:<tag>`) and one item
/// of the other counters ([`TOTALS_ITEM`], an attribute per counter). Every write adds its delta
/// with `ADD` inside its own `TransactWriteItems`, to one shard picked at random, so a retry under
/// the same `ClientRequestToken` never adds twice, and a read sums the shards.
///
/// Why shards: every write changes the entry total. One item takes at most 1,000 write units a
/// second (a partition's limit), and a transactional write of an item under 1 KB costs 2, so one
/// counter item would cap the whole table at 500 writes a second, and concurrent transactions on
/// it cancel each other (TransactionConflict). 16 shards: 8,000 writes a second.
pub const COUNT_SHARDS: u32 = 16;
/// The sort key of a shard's item of the counters other than tags.
const TOTALS_ITEM: &str = "totals";
/// The count attribute of a tag counter item.
const COUNT_ATTR: &str = "n";

/// The partition of one shard of the kept counts (never a tag: longer than a tag may be).
pub fn counts_partition(shard: u32) -> String {
    format!("registry-db: kept counts, shard {shard:02} (not a tag: longer than a tag may be)")
}

fn is_counts_partition(tag: &str) -> bool {
    tag.starts_with("registry-db: kept counts, shard ")
}

/// DynamoDB's limit on actions in one `TransactWriteItems`.
pub const MAX_TRANSACT_ACTIONS: usize = 100;
// The entry, a put for every new tag and a delete for every old one fit one transaction.
const _: () = assert!(2 * crate::domain::entry::MAX_TAGS < MAX_TRANSACT_ACTIONS);
/// Keys per `BatchGetItem` and items per `BatchWriteItem` (DynamoDB's limits).
const BATCH_GET: usize = 100;
const BATCH_WRITE: usize = 25;
/// Attempts for writes that lose to a concurrent transaction, and for unprocessed batch keys.
const ATTEMPTS: u32 = 16;

// The SDK's retries and timeouts. API Gateway gives a request 30 s (and the function's timeout is
// 30 s by default, template.yaml). The longest write path is a read (the service's, or delete's
// own), tries of the transaction started within WRITE_BUDGET, the last of which may take a whole
// operation, and one read back after a failed condition: 3 operations and the budget, under 30 s.
/// Tries of one request, the first included (the SDK's default is 3): with throttling or a burst of
/// 5xx, five tries (up to 0.75 s of backoff between them) ride out most of it before the caller
/// sees a 503.
pub const SDK_MAX_ATTEMPTS: u32 = 5;
/// Backoff before the first retry; each next one doubles, with full jitter, up to
/// [`SDK_MAX_BACKOFF`] (the SDK's defaults are 1 s and 20 s: far too slow for a 30 s request).
pub const SDK_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
pub const SDK_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// One try: DynamoDB answers in milliseconds, a 1 MB scan page in well under a second, so a try
/// that takes 2 s is stuck (a lost connection, a hung proxy) and is better tried again.
pub const SDK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Setting up a connection (TCP and TLS) to the regional endpoint.
pub const SDK_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// One operation, all tries and backoffs included: three tries that time out and their backoffs.
pub const SDK_OPERATION_TIMEOUT: Duration = Duration::from_secs(6);
/// Our own retry loops (writes that lose to a concurrent transaction) start no new try after this
/// long: past it the answer is a 409 `update_conflict` and the client may try again.
pub const WRITE_BUDGET: Duration = Duration::from_secs(5);
const _: () = assert!(3 * SDK_OPERATION_TIMEOUT.as_secs() + WRITE_BUDGET.as_secs() < 30);
const _: () = assert!(SDK_CONNECT_TIMEOUT.as_millis() < SDK_ATTEMPT_TIMEOUT.as_millis());

/// The SDK's retry settings for the service's DynamoDB client (see the constants above).
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(SDK_MAX_ATTEMPTS)
        .with_initial_backoff(SDK_INITIAL_BACKOFF)
        .with_max_backoff(SDK_MAX_BACKOFF)
}

/// The SDK's timeouts for the service's DynamoDB client (see the constants above).
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(SDK_CONNECT_TIMEOUT)
        .operation_attempt_timeout(SDK_ATTEMPT_TIMEOUT)
        .operation_timeout(SDK_OPERATION_TIMEOUT)
        .build()
}

/// Counts the tries the SDK makes of one request: more than one means an earlier try may have
/// applied although its answer never came.
#[derive(Debug, Clone, Default)]
struct Tries(Arc<AtomicU32>);

impl Intercept for Tries {
    fn name(&self) -> &'static str {
        "registry-db: count tries"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One logical write: its idempotency token, and whether any try so far may have applied.
struct Write {
    token: String,
    started: Instant,
    maybe_applied: bool,
    /// Write units the transactions of this write consumed, as DynamoDB reported them.
    units: f64,
}

impl Write {
    fn new() -> Self {
        Write {
            // 36 characters: the most DynamoDB accepts.
            token: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            maybe_applied: false,
            units: 0.0,
        }
    }

    /// A new token, for a retry that sends a different request (DynamoDB refuses a token reused
    /// with other parameters). Only after an outcome that says the last request did not apply.
    fn renew_token(&mut self) {
        self.token = uuid::Uuid::new_v4().to_string();
    }

    fn out_of_time(&self) -> bool {
        self.started.elapsed() >= WRITE_BUDGET
    }
}

pub struct DynamoStore {
    client: Client,
    table: String,
    tag_table: String,
    history_table: String,
    /// Write units DynamoDB reported for the health writes (record_probe, set_health), in
    /// thousandths: what a sweep costs.
    health_write_milliunits: AtomicU64,
    pushdown: TranslateOptions,
    index_ready: AtomicBool,
    counts_ready: AtomicBool,
    index_checked: Mutex<Option<Instant>>,
}

/// Parallel Scan segments of an export: several pages in flight, each of at most 1 MB (DynamoDB's
/// page size), so memory stays bounded by the channel and these pages.
const EXPORT_SEGMENTS: i32 = 4;

fn sdk_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("DynamoDB: {}", DisplayErrorContext(&err)))
}

fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("cannot build a DynamoDB request: {e}"))
}

/// `Ok(true)` when a conditional write happened, `Ok(false)` when its condition did not hold.
fn condition_held<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(err) if err.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(err) => Err(sdk_error(err)),
    }
}

/// How a transaction ended.
enum Outcome {
    Done,
    /// The condition on the first action (the entry) did not hold.
    ConditionFailed,
    /// A concurrent transaction touched the same items and DynamoDB cancelled this one (it wrote
    /// nothing): try again.
    Conflict,
    /// An earlier try under the same token is still running: try again under that token, which
    /// completes it (AWS's advice for TransactionInProgressException).
    InProgress,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key_of(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(KEY.to_string(), s(id))])
}

fn index_key(tag: &str, id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(TAG.to_string(), s(tag)), (KEY.to_string(), s(id))])
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<ContainerRegistry, StoreError> {
    dynamo::from_item(item)
        .map_err(|e| StoreError::Unavailable(format!("a stored item is not a valid entry: {e}")))
}

fn to_item(entry: &ContainerRegistry) -> Result<HashMap<String, AttributeValue>, StoreError> {
    dynamo::to_item(entry)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode the entry for DynamoDB: {e}")))
}

/// An item as the JSON text the rest of the service handles.
fn stored(item: HashMap<String, AttributeValue>) -> Result<StoredEntry, StoreError> {
    let entry = from_item(item)?;
    let json = serde_json::to_vec(&entry).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(StoredEntry {
        id: entry.container_registry_id.into(),
        json: Bytes::from(json),
    })
}

fn number_attr(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A history item's counts.
fn day_counts(item: &HashMap<String, AttributeValue>) -> DayCounts {
    let mut c = DayCounts {
        healthy: number_attr(item, HealthStatus::Healthy.as_str()),
        auth_required: number_attr(item, HealthStatus::AuthRequired.as_str()),
        not_registry: number_attr(item, HealthStatus::NotRegistry.as_str()),
        unreachable: number_attr(item, HealthStatus::Unreachable.as_str()),
        ..Default::default()
    };
    for (i, slot) in c.latency.iter_mut().enumerate() {
        *slot = number_attr(item, &bucket_attr(i));
    }
    c
}

/// What a sweep reads of a stored health record (a projection of it).
fn last_health(health: &AttributeValue) -> Option<LastHealth> {
    let map = health.as_m().ok()?;
    let status =
        serde_json::from_value(serde_json::Value::String(string_attr(map, "status")?)).ok()?;
    Some(LastHealth {
        status,
        url: string_attr(map, "url")?,
        checked_at: string_attr(map, "checked_at")?,
        uptime_30d: match map.get("uptime_30d") {
            Some(AttributeValue::N(v)) => v.parse().ok(),
            _ => None,
        },
    })
}

fn string_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn last_id(key: Option<HashMap<String, AttributeValue>>) -> Result<Option<String>, StoreError> {
    match key {
        None => Ok(None),
        Some(key) => string_attr(&key, KEY).map(Some).ok_or_else(|| {
            StoreError::Unavailable("DynamoDB returned a LastEvaluatedKey without the id".into())
        }),
    }
}

/// Tags of a stored item, read from its `L` of `S`.
fn item_tags(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    match item.get(TAGS) {
        Some(AttributeValue::L(list)) => {
            list.iter().filter_map(|v| v.as_s().ok().cloned()).collect()
        }
        _ => Vec::new(),
    }
}

impl DynamoStore {
    /// A client configured from the usual AWS settings (`AWS_ENDPOINT_URL_DYNAMODB`, region,
    /// credentials). With `create_table`, missing tables are created with the template's key schemas.
    pub async fn connect(
        table: &str,
        tag_table: &str,
        history_table: &str,
        create_table: bool,
    ) -> anyhow::Result<Self> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http::sdk_http_client())
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .load()
            .await;
        // A custom endpoint may be an emulator (dynalite's `contains` does not search lists): push
        // down list membership only against AWS itself. Either way the answer is exact.
        let pushdown = if config.endpoint_url().is_some() {
            TranslateOptions::DYNALITE
        } else {
            TranslateOptions::DYNAMODB
        };
        let store = DynamoStore::from_client(Client::new(&config), table, tag_table, pushdown)
            .with_history_table(history_table);
        if create_table {
            store.ensure_table().await?;
        }
        Ok(store)
    }

    /// A store on a client built elsewhere (tests). The SDK has no HTTP client of its own here
    /// (Cargo.toml): build the client's config with `.http_client(sdk_http_client())`.
    pub fn from_client(
        client: Client,
        table: &str,
        tag_table: &str,
        pushdown: TranslateOptions,
    ) -> Self {
        DynamoStore {
            client,
            table: table.to_string(),
            tag_table: tag_table.to_string(),
            history_table: default_history_table(table),
            health_write_milliunits: AtomicU64::new(0),
            pushdown,
            index_ready: AtomicBool::new(false),
            counts_ready: AtomicBool::new(false),
            index_checked: Mutex::new(None),
        }
    }

    /// The same store with its health history in `table` (default `<entries table>-history`).
    pub fn with_history_table(mut self, table: &str) -> Self {
        self.history_table = table.to_string();
        self
    }

    /// The history table's name.
    pub fn history_table(&self) -> &str {
        &self.history_table
    }

    /// Write units DynamoDB reported (`ReturnConsumedCapacity`) for the health writes so far:
    /// the history's UpdateItems and the entries' health UpdateItems.
    pub fn health_write_units(&self) -> f64 {
        self.health_write_milliunits.load(Ordering::Relaxed) as f64 / 1000.0
    }

    fn count_write_units(&self, consumed: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>) {
        if let Some(units) = consumed.and_then(|c| c.capacity_units()) {
            self.count_health_units(units);
        }
    }

    fn count_health_units(&self, units: f64) {
        let milli = (units * 1000.0).round().max(0.0) as u64;
        self.health_write_milliunits
            .fetch_add(milli, Ordering::Relaxed);
        crate::metrics::dynamodb_write_units(units);
    }

    /// Creates the entries table, the tag index table and the health history table (with TTL on
    /// `expires_at`) when they do not exist (on-demand billing), and waits until they are active.
    /// A tag index table created next to an empty entries table is complete from the start.
    pub async fn ensure_table(&self) -> anyhow::Result<()> {
        if self
            .ensure_one(
                &self.history_table,
                &[(KEY, KeyType::Hash), (DAY, KeyType::Range)],
            )
            .await?
        {
            self.enable_ttl().await?;
        }
        let entries_created = self
            .ensure_one(&self.table, &[(KEY, KeyType::Hash)])
            .await?;
        let index_created = self
            .ensure_one(
                &self.tag_table,
                &[(TAG, KeyType::Hash), (KEY, KeyType::Range)],
            )
            .await?;
        if index_created && entries_created {
            self.mark_index_complete().await?;
            self.mark_counts_complete().await?;
        }
        Ok(())
    }

    /// Creates one table if missing; `true` when this call created it.
    async fn ensure_one(&self, name: &str, keys: &[(&str, KeyType)]) -> anyhow::Result<bool> {
        let created = match self.client.describe_table().table_name(name).send().await {
            Ok(_) => false,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                let mut request = self
                    .client
                    .create_table()
                    .table_name(name)
                    .billing_mode(BillingMode::PayPerRequest);
                for (attr, kind) in keys {
                    request = request
                        .attribute_definitions(
                            AttributeDefinition::builder()
                                .attribute_name(*attr)
                                .attribute_type(ScalarAttributeType::S)
                                .build()?,
                        )
                        .key_schema(
                            KeySchemaElement::builder()
                                .attribute_name(*attr)
                                .key_type(kind.clone())
                                .build()?,
                        );
                }
                match request.send().await {
                    Ok(_) => true,
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| e.is_resource_in_use_exception()) =>
                    {
                        false
                    }
                    Err(err) => anyhow::bail!(
                        "cannot create DynamoDB table {name}: {}",
                        DisplayErrorContext(&err)
                    ),
                }
            }
            Err(err) => anyhow::bail!(
                "cannot reach DynamoDB table {name}: {}",
                DisplayErrorContext(&err)
            ),
        };
        for _ in 0..120 {
            let desc = self.client.describe_table().table_name(name).send().await?;
            if desc.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(created);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!("DynamoDB table {name} did not become active within a minute")
    }

    /// Turns on TTL of the history table. An emulator that lacks the operation (dynalite) is
    /// told in a warning: days past 90 are never read, TTL only frees their storage.
    async fn enable_ttl(&self) -> anyhow::Result<()> {
        let spec = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
            .attribute_name(EXPIRES_AT)
            .enabled(true)
            .build()?;
        match self
            .client
            .update_time_to_live()
            .table_name(&self.history_table)
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("UnknownOperationException") => {
                tracing::warn!(
                    table = %self.history_table,
                    "this DynamoDB endpoint has no UpdateTimeToLive: history days past 90 stay stored (never read)"
                );
                Ok(())
            }
            Err(err) => anyhow::bail!(
                "cannot turn on TTL of DynamoDB table {}: {}",
                self.history_table,
                DisplayErrorContext(&err)
            ),
        }
    }

    /// Deletes every history item of `id` (Query of its partition, then batches of deletes).
    async fn delete_history(&self, id: &str) -> Result<(), StoreError> {
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.history_table)
                .key_condition_expression("#id = :id")
                .expression_attribute_names("#id", KEY)
                .expression_attribute_names("#d", DAY)
                .expression_attribute_values(":id", s(id))
                .projection_expression("#id, #d")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            let requests = out
                .items()
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(build_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !requests.is_empty() {
                self.batch_write(&self.history_table, requests).await?;
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(()),
            }
        }
    }

    /// Whether the kept counts cover every entry: their marker is there (written by `reindex`,
    /// or when the table was found empty), so no entry predates them. Until then `{}` is counted
    /// from the entries, as any filter.
    async fn counts_ready(&self) -> Result<bool, StoreError> {
        if self.counts_ready.load(Ordering::Acquire) {
            return Ok(true);
        }
        self.marker_or_empty(COUNTS_MARKER_ID, &self.counts_ready)
            .await
    }

    /// Whether the marker `id` is in the tag table, or the entries table is empty (then the
    /// marker is written now: nothing predates it); `flag` remembers a yes.
    async fn marker_or_empty(&self, id: &str, flag: &AtomicBool) -> Result<bool, StoreError> {
        let marker = self
            .client
            .get_item()
            .table_name(&self.tag_table)
            .set_key(Some(index_key(INDEX_MARKER_TAG, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        if marker.item.is_some() {
            flag.store(true, Ordering::Release);
            return Ok(true);
        }
        let probe = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        if probe.items.as_ref().is_none_or(Vec::is_empty) && probe.last_evaluated_key.is_none() {
            self.put_marker(id, flag).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes the marker `id` (the index or the counts cover every entry) and remembers it.
    async fn put_marker(&self, id: &str, flag: &AtomicBool) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tag_table)
            .set_item(Some(index_key(INDEX_MARKER_TAG, id)))
            .send()
            .await
            .map_err(sdk_error)?;
        flag.store(true, Ordering::Release);
        Ok(())
    }

    async fn mark_counts_complete(&self) -> Result<(), StoreError> {
        self.put_marker(COUNTS_MARKER_ID, &self.counts_ready).await
    }

    async fn mark_index_complete(&self) -> Result<(), StoreError> {
        self.put_marker(INDEX_MARKER_ID, &self.index_ready).await
    }

    /// Whether queries may use the tag index: its completion marker is there, or the entries
    /// table is empty (then the marker is written now). A table that predates the index is scanned
    /// until `registry-db reindex` has run; that is looked at again every [`INDEX_RECHECK`].
    async fn index_ready(&self) -> bool {
        if self.index_ready.load(Ordering::Acquire) {
            return true;
        }
        {
            let mut checked = self.index_checked.lock().expect("index check lock");
            if checked.is_some_and(|at| at.elapsed() < INDEX_RECHECK) {
                return false;
            }
            *checked = Some(Instant::now());
        }
        match self.check_index().await {
            Ok(ready) => ready,
            Err(e) => {
                tracing::warn!(error = %e, table = %self.tag_table, "cannot read the tag index state; scanning instead");
                false
            }
        }
    }

    async fn check_index(&self) -> Result<bool, StoreError> {
        if self
            .marker_or_empty(INDEX_MARKER_ID, &self.index_ready)
            .await?
        {
            return Ok(true);
        }
        tracing::warn!(
            table = %self.table,
            tag_table = %self.tag_table,
            "the tag index is not built for existing entries: tag queries scan the table until `registry-db reindex` runs"
        );
        Ok(false)
    }

    /// Runs one transaction of `write` under its token; the first action must be the entry's.
    async fn transact(
        &self,
        write: &mut Write,
        actions: Vec<TransactWriteItem>,
    ) -> Result<Outcome, StoreError> {
        let tries = Tries::default();
        let result = self
            .client
            .transact_write_items()
            .client_request_token(&write.token)
            .set_transact_items(Some(actions))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .customize()
            .interceptor(tries.clone())
            .send()
            .await;
        if tries.0.load(Ordering::Relaxed) > 1 {
            write.maybe_applied = true;
        }
        let err = match result {
            Ok(out) => {
                write.units += out
                    .consumed_capacity()
                    .iter()
                    .filter_map(|c| c.capacity_units())
                    .sum::<f64>();
                return Ok(Outcome::Done);
            }
            Err(err) => err,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        {
            let reasons = cancelled.cancellation_reasons();
            if reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed") {
                return Ok(Outcome::ConditionFailed);
            }
            if reasons
                .iter()
                .any(|r| r.code() == Some("TransactionConflict"))
            {
                return Ok(Outcome::Conflict);
            }
        }
        match err.code() {
            Some("TransactionConflictException") => Ok(Outcome::Conflict),
            Some("TransactionInProgressException") => Ok(Outcome::InProgress),
            _ => Err(sdk_error(err)),
        }
    }

    /// Whether the entry `id` holds every attribute of `written` (but its health, which the prober
    /// may have changed since): a write whose condition failed after a retry uses it to tell its
    /// own earlier try, applied with its answer lost, from another writer. `written` carries the
    /// new version and update time, so another write does not pass for ours.
    async fn holds(
        &self,
        id: &str,
        written: &HashMap<String, AttributeValue>,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item.is_some_and(|stored| {
            written
                .iter()
                .filter(|(name, _)| name.as_str() != HEALTH)
                .all(|(name, value)| stored.get(name) == Some(value))
        }))
    }

    /// What to do after a transaction that did not apply: `false` to give up (out of attempts or
    /// time). Backs off; a cancelled request is sent again as a new one (a new token), a request
    /// still in progress under its token again under that token.
    async fn again(&self, write: &mut Write, outcome: &Outcome, attempt: u32) -> bool {
        if matches!(outcome, Outcome::Conflict | Outcome::ConditionFailed) {
            write.renew_token();
        }
        backoff(attempt).await;
        attempt + 1 < ATTEMPTS && !write.out_of_time()
    }

    /// The `ADD`s of `delta` to one shard: one action for the tag counters each, one for the rest.
    fn count_actions(
        &self,
        delta: &CountDelta,
        shard: u32,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let partition = counts_partition(shard);
        let mut actions = Vec::new();
        let mut totals = Update::builder()
            .table_name(&self.tag_table)
            .set_key(Some(index_key(&partition, TOTALS_ITEM)));
        let mut adds = Vec::new();
        for (i, (key, d)) in delta.iter().enumerate() {
            if key.starts_with("t:") {
                let update = Update::builder()
                    .table_name(&self.tag_table)
                    .set_key(Some(index_key(&partition, key)))
                    .update_expression("ADD #n :d")
                    .expression_attribute_names("#n", COUNT_ATTR)
                    .expression_attribute_values(":d", AttributeValue::N(d.to_string()))
                    .build()
                    .map_err(build_error)?;
                actions.push(TransactWriteItem::builder().update(update).build());
            } else {
                adds.push(format!("#c{i} :c{i}"));
                totals = totals
                    .expression_attribute_names(format!("#c{i}"), key)
                    .expression_attribute_values(
                        format!(":c{i}"),
                        AttributeValue::N(d.to_string()),
                    );
            }
        }
        if !adds.is_empty() {
            let update = totals
                .update_expression(format!("ADD {}", adds.join(", ")))
                .build()
                .map_err(build_error)?;
            actions.insert(0, TransactWriteItem::builder().update(update).build());
        }
        Ok(actions)
    }

    /// Every kept counter, summed over the shards (consistent reads, shards in parallel).
    async fn read_counters(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let shards = (0..COUNT_SHARDS).map(|shard| async move {
            let mut out = Vec::new();
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.tag_table)
                    .key_condition_expression("#t = :p")
                    .expression_attribute_names("#t", TAG)
                    .expression_attribute_values(":p", s(&counts_partition(shard)))
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(sdk_error)?;
                for item in page.items.unwrap_or_default() {
                    let Some(key) = string_attr(&item, KEY) else {
                        continue;
                    };
                    let number =
                        |v: &AttributeValue| v.as_n().ok().and_then(|n| n.parse::<i64>().ok());
                    if key == TOTALS_ITEM {
                        for (name, v) in &item {
                            if name != TAG
                                && name != KEY
                                && let Some(n) = number(v)
                            {
                                out.push((name.clone(), n));
                            }
                        }
                    } else if let Some(n) = item.get(COUNT_ATTR).and_then(number) {
                        out.push((key, n));
                    }
                }
                match page.last_evaluated_key {
                    Some(key) => start = Some(key),
                    None => return Ok::<_, StoreError>(out),
                }
            }
        });
        let all = futures::future::try_join_all(shards).await?;
        Ok(counts::sum_shards(all.into_iter().flatten()))
    }

    /// The stored verdict of `id`: `None` when there is no entry, `Some(None)` when never probed.
    async fn stored_status(
        &self,
        id: &str,
    ) -> Result<Option<Option<crate::health::HealthStatus>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .consistent_read(true)
            .projection_expression("#id, #h.#hs")
            .expression_attribute_names("#id", KEY)
            .expression_attribute_names("#h", HEALTH)
            .expression_attribute_names("#hs", "status")
            .send()
            .await
            .map_err(sdk_error)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let status = match item.get(HEALTH) {
            Some(AttributeValue::M(m)) => m
                .get("status")
                .and_then(|v| v.as_s().ok())
                .and_then(|st| serde_json::from_value(serde_json::Value::String(st.clone())).ok()),
            _ => None,
        };
        Ok(Some(status))
    }

    fn put_index(&self, tag: &str, id: &str) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.tag_table)
            .set_item(Some(index_key(tag, id)))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete_index(&self, tag: &str, id: &str) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.tag_table)
            .set_key(Some(index_key(tag, id)))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Deletes index items outside a transaction (only for what a transaction had no room for).
    async fn delete_index_items(&self, keys: Vec<(String, String)>) -> Result<(), StoreError> {
        let requests = keys
            .iter()
            .map(|(tag, id)| {
                DeleteRequest::builder()
                    .set_key(Some(index_key(tag, id)))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(&self.tag_table, requests).await
    }

    async fn batch_write(
        &self,
        table: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH_WRITE) {
            let mut pending = chunk.to_vec();
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(table, pending)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt >= ATTEMPTS {
                    return Err(StoreError::Unavailable(
                        "DynamoDB kept leaving index writes unprocessed".into(),
                    ));
                }
                backoff(attempt).await;
            }
        }
        Ok(())
    }

    /// One tag's index list after `after`, at most `max` ids; reads on past empty pages so that an
    /// incomplete list always holds an id (see [`merge`]).
    async fn posting(
        &self,
        tag: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Posting, StoreError> {
        if !storable_tag(tag) {
            return Ok(Posting {
                ids: Vec::new(),
                complete: true,
            });
        }
        let limit = i32::try_from(max.clamp(1, 10_000)).unwrap_or(10_000);
        let mut start = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.tag_table)
                .expression_attribute_names("#t", TAG)
                .expression_attribute_values(":t", s(tag))
                .limit(limit)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            request = match after {
                Some(after) => request
                    .key_condition_expression("#t = :t AND #id > :after")
                    .expression_attribute_names("#id", KEY)
                    .expression_attribute_values(":after", s(after)),
                None => request.key_condition_expression("#t = :t"),
            };
            let out = request.send().await.map_err(sdk_error)?;
            let ids: Vec<String> = out
                .items
                .unwrap_or_default()
                .iter()
                .filter_map(|item| string_attr(item, KEY))
                .collect();
            match out.last_evaluated_key {
                None => {
                    return Ok(Posting {
                        ids,
                        complete: true,
                    });
                }
                Some(_) if !ids.is_empty() => {
                    return Ok(Posting {
                        ids,
                        complete: false,
                    });
                }
                Some(key) => start = Some(key),
            }
        }
    }

    /// The entries with these ids (those that exist), in id order.
    async fn fetch(&self, ids: &[String]) -> Result<Vec<StoredEntry>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_GET) {
            let mut keys: Vec<_> = chunk.iter().map(|id| key_of(id)).collect();
            for attempt in 0.. {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    found.push(stored(item)?);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut m| m.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if keys.is_empty() {
                    break;
                }
                if attempt >= ATTEMPTS {
                    return Err(StoreError::Unavailable(
                        "DynamoDB kept leaving entry reads unprocessed".into(),
                    ));
                }
                backoff(attempt).await;
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn scan_index(
        &self,
        plan: &TagPlan,
        after: Option<&str>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<ScanChunk, StoreError> {
        let terms = plan.set.terms();
        // One key more than needed per list tells whether more follow.
        let postings = futures::future::try_join_all(terms.iter().map(|term| match term {
            Term::Tag(tag) => self.posting(tag, after, max_entries + 1),
            Term::Word(_) => unreachable!("scan leaves name parts out of the plan"),
        }))
        .await?;
        let index_keys = postings.iter().map(|p| p.ids.len()).sum();
        let postings: BTreeMap<Term, Posting> = terms.into_iter().zip(postings).collect();
        let merged = merge(&plan.set, postings);
        let mut candidates = Vec::new();
        let mut bytes = 0;
        let mut last_key = merged.horizon;
        let mut ids = merged.ids;
        if ids.len() > max_entries {
            ids.truncate(max_entries);
            last_key = ids.last().cloned();
        }
        let batches: Vec<&[String]> = ids.chunks(BATCH_GET).collect();
        for (i, batch) in batches.iter().enumerate() {
            let entries = self.fetch(batch).await?;
            bytes += entries.iter().map(|e| e.json.len()).sum::<usize>();
            candidates.extend(entries);
            if bytes >= max_bytes && i + 1 < batches.len() {
                last_key = batch.last().cloned();
                break;
            }
        }
        Ok(ScanChunk {
            scanned: candidates.len(),
            index_keys,
            candidates,
            last_key,
            // Stale index items are possible here (see the module docs): always evaluate.
            exact: false,
            used_index: true,
        })
    }

    async fn scan_table(
        &self,
        request: ScanRequest<'_>,
        consistent: bool,
    ) -> Result<ScanChunk, StoreError> {
        let pushdown = filter::translate_with(request.filter, &self.pushdown);
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(consistent)
            .limit(i32::try_from(request.max_entries.clamp(1, 10_000)).unwrap_or(10_000))
            .set_exclusive_start_key(request.after.map(key_of));
        if let Some(expr) = pushdown {
            let mut values = HashMap::with_capacity(expr.values.len());
            for (name, value) in expr.values {
                let value = dynamo::to_attribute_value(value).map_err(|e| {
                    StoreError::Unavailable(format!("cannot encode a filter value: {e}"))
                })?;
                values.insert(name, value);
            }
            scan = scan
                .filter_expression(expr.expression)
                .set_expression_attribute_names((!expr.names.is_empty()).then_some(expr.names))
                .set_expression_attribute_values((!values.is_empty()).then_some(values));
        }
        let out = scan.send().await.map_err(sdk_error)?;
        let scanned = usize::try_from(out.scanned_count).unwrap_or(0);
        let last_key = last_id(out.last_evaluated_key)?;
        let candidates = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(stored)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScanChunk {
            candidates,
            last_key,
            scanned,
            index_keys: 0,
            exact: false,
            used_index: false,
        })
    }
}

fn pick_shard() -> u32 {
    rand::random_range(0..COUNT_SHARDS)
}

/// Tags `new` carries that `old` does not (index items a replace puts).
fn new_tags_added(old: &ContainerRegistry, new: &ContainerRegistry) -> usize {
    new.container_registry_tags
        .iter()
        .filter(|t| !old.container_registry_tags.contains(t))
        .count()
}

async fn backoff(attempt: u32) {
    let ms = rand::random_range(0..=(5u64 << attempt.min(6)));
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[async_trait]
impl Store for DynamoStore {
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError> {
        self.insert_owned(entry, None).await
    }

    async fn insert_owned(
        &self,
        entry: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let id = &entry.container_registry_id;
        // The owner is an attribute of the item but not of the entry: `stored` reads items back
        // as entries, so it never reaches an answer.
        let mut item = to_item(entry)?;
        if let Some(owner) = owner {
            item.insert(OWNER.to_string(), s(owner));
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", KEY)
            .build()
            .map_err(build_error)?;
        let written = to_item(entry)?;
        let mut actions = vec![TransactWriteItem::builder().put(put).build()];
        for tag in &entry.container_registry_tags {
            actions.push(self.put_index(tag, id)?);
        }
        // 1 + 48 index items + 1 + 48 tag counters: within the 100 actions.
        let mut delta = CountDelta::default();
        delta.add(&counts::entry_keys(entry, owner.is_some()), 1);
        actions.extend(self.count_actions(&delta, pick_shard())?);
        let mut write = Write::new();
        for attempt in 0.. {
            match self.transact(&mut write, actions.clone()).await? {
                Outcome::Done => return Ok(()),
                // Taken: by our own earlier try (applied, its answer lost), or by someone else.
                Outcome::ConditionFailed
                    if write.maybe_applied && self.holds(id, &written).await? =>
                {
                    return Ok(());
                }
                Outcome::ConditionFailed => return Err(StoreError::AlreadyExists(id.clone())),
                outcome => {
                    if !self.again(&mut write, &outcome, attempt).await {
                        break;
                    }
                }
            }
        }
        Err(StoreError::VersionConflict)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.item.map(stored).transpose()
    }

    async fn replace(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
    ) -> Result<(), StoreError> {
        self.replace_owned(old, new, None).await
    }

    async fn replace_owned(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let id = &new.container_registry_id;
        // SET every attribute but the key and the health result, which stays as the prober left it.
        let mut item = to_item(new)?;
        item.remove(KEY);
        item.remove(HEALTH);
        let written = item.clone();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .expression_attribute_names("#a_v", VERSION)
            .expression_attribute_values(":expected", n(old.container_registry_version));
        update = match owner {
            None => update.condition_expression("#a_v = :expected"),
            Some(owner) => update
                .condition_expression("#a_v = :expected AND #a_o = :owner")
                .expression_attribute_names("#a_o", OWNER)
                .expression_attribute_values(":owner", s(owner)),
        };
        let mut sets = Vec::with_capacity(item.len());
        for (i, (name, value)) in item.into_iter().enumerate() {
            let (name_ph, value_ph) = if name == VERSION {
                ("#a_v".to_string(), format!(":v{i}"))
            } else {
                (format!("#a{i}"), format!(":v{i}"))
            };
            sets.push(format!("{name_ph} = {value_ph}"));
            update = update
                .expression_attribute_names(name_ph, name)
                .expression_attribute_values(value_ph, value);
        }
        let update = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .build()
            .map_err(build_error)?;
        let mut actions = vec![TransactWriteItem::builder().update(update).build()];
        // The counts change by what the entry's fields change (health and owner stay as they
        // are, so they cancel out): the stored entry is `old`, the version condition says so.
        let delta = CountDelta::between(
            &counts::entry_keys(old, false),
            &counts::entry_keys(new, false),
        );
        let mut count_actions = self.count_actions(&delta, pick_shard())?;
        // Only an update that swaps most of 48 tags needs more than 100 actions: its last tag
        // counters follow in a transaction of their own (`reindex` repairs them should the
        // process stop in between).
        let room = MAX_TRANSACT_ACTIONS.saturating_sub(1 + new_tags_added(old, new));
        let spill_counts = if count_actions.len() > room {
            count_actions.split_off(room)
        } else {
            Vec::new()
        };
        actions.extend(count_actions);
        let (old_tags, new_tags) = (&old.container_registry_tags, &new.container_registry_tags);
        for tag in new_tags.iter().filter(|t| !old_tags.contains(t)) {
            actions.push(self.put_index(tag, id)?);
        }
        // Removed tags go in the same transaction when there is room (always, for entries within
        // today's tag limit); a legacy entry's surplus is removed right after: an extra index item
        // only costs a read.
        let mut spill = Vec::new();
        for tag in old_tags.iter().filter(|t| !new_tags.contains(t)) {
            if actions.len() < MAX_TRANSACT_ACTIONS {
                actions.push(self.delete_index(tag, id)?);
            } else {
                spill.push((tag.clone(), id.clone()));
            }
        }
        let mut write = Write::new();
        for attempt in 0.. {
            let outcome = match self.transact(&mut write, actions.clone()).await? {
                // Not at the version read: moved on by our own earlier try (applied, its answer
                // lost: the stored entry is the new one, version and update time included), or by
                // another writer.
                Outcome::ConditionFailed
                    if write.maybe_applied && self.holds(id, &written).await? =>
                {
                    Outcome::Done
                }
                outcome => outcome,
            };
            match outcome {
                Outcome::Done => {
                    if !spill_counts.is_empty() {
                        self.transact(&mut Write::new(), spill_counts).await?;
                    }
                    if !spill.is_empty() {
                        self.delete_index_items(spill).await?;
                    }
                    return Ok(());
                }
                Outcome::ConditionFailed => return Err(StoreError::VersionConflict),
                outcome => {
                    if !self.again(&mut write, &outcome, attempt).await {
                        break;
                    }
                }
            }
        }
        Err(StoreError::VersionConflict)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_owned(id, None).await
    }

    async fn delete_owned(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        let mut write = Write::new();
        // One shard for every try: a request repeated under its token must be the same request.
        let shard = pick_shard();
        let mut last_version = None;
        for attempt in 0.. {
            // The index items to delete are the stored entry's tags, at the version read.
            // The whole item: the counts it leaves are its tags, types, verdict and owner.
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key_of(id)))
                .consistent_read(true)
                .send()
                .await
                .map_err(sdk_error)?;
            let Some(item) = out.item else {
                // Gone after a try of ours that may have applied (its answer lost): that try
                // deleted it, or a concurrent delete did; either way the entry is deleted.
                if write.maybe_applied {
                    self.delete_history(id).await?;
                }
                return Ok(write.maybe_applied);
            };
            // Owned by someone else now (rotated since the caller was checked): not this
            // caller's to delete.
            if owner.is_some() && string_attr(&item, OWNER).as_deref() != owner {
                return Err(StoreError::VersionConflict);
            }
            let version = item.get(VERSION).cloned().unwrap_or_else(|| n(0));
            let stored_owner = string_attr(&item, OWNER);
            // Another version makes another request, which must not reuse the token.
            let read = (
                version.clone(),
                item.get(HEALTH).cloned(),
                stored_owner.clone(),
            );
            if last_version
                .replace(read.clone())
                .is_some_and(|last| last != read)
            {
                write.renew_token();
            }
            let has_owner = stored_owner.is_some();
            let entry = from_item(item.clone())?;
            // A probe records health without a new version: the verdict read is in the condition
            // too, so the counts this delete takes away are the stored entry's.
            let status = entry.container_registry_health.as_ref().map(|h| h.status);
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key_of(id)))
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_names("#h", HEALTH)
                .expression_attribute_values(":v", version);
            let (delete, health_cond) = match status {
                Some(status) => (
                    delete
                        .expression_attribute_names("#hs", "status")
                        .expression_attribute_values(":hs", s(status.as_str())),
                    "#h.#hs = :hs",
                ),
                None => (delete, "attribute_not_exists(#h)"),
            };
            // The owner as read is in the condition whoever deletes: a first owner set meanwhile
            // (which makes no new version) would otherwise leave the `owned` count one high.
            let delete = match &stored_owner {
                None => delete.condition_expression(format!(
                    "#v = :v AND attribute_not_exists(#o) AND {health_cond}"
                )),
                Some(stored) => delete
                    .condition_expression(format!("#v = :v AND #o = :o AND {health_cond}"))
                    .expression_attribute_values(":o", s(stored)),
            }
            .expression_attribute_names("#o", OWNER)
            .build()
            .map_err(build_error)?;
            let mut actions = vec![TransactWriteItem::builder().delete(delete).build()];
            let mut delta = CountDelta::default();
            delta.add(&counts::entry_keys(&entry, has_owner), -1);
            actions.extend(self.count_actions(&delta, shard)?);
            let mut spill = Vec::new();
            for tag in item_tags(&item) {
                if actions.len() < MAX_TRANSACT_ACTIONS {
                    actions.push(self.delete_index(&tag, id)?);
                } else {
                    spill.push((tag, id.to_string()));
                }
            }
            match self.transact(&mut write, actions).await? {
                Outcome::Done => {
                    if !spill.is_empty() {
                        self.delete_index_items(spill).await?;
                    }
                    // After the entry (no transaction spans the two tables): should this fail,
                    // the days left expire by TTL within 90 days.
                    self.delete_history(id).await?;
                    return Ok(true);
                }
                // Changed or deleted since it was read (ConditionFailed): read it again.
                outcome => {
                    if !self.again(&mut write, &outcome, attempt).await {
                        break;
                    }
                }
            }
        }
        Err(StoreError::VersionConflict)
    }

    async fn scan(&self, request: ScanRequest<'_>) -> Result<ScanChunk, StoreError> {
        match request.plan {
            // No name index here: a plan's name parts are left out (a superset, evaluated).
            Plan::Tags(plan) if self.index_ready().await => match plan.set.tags_only() {
                Some(set) => {
                    let plan = TagPlan { set, exact: false };
                    self.scan_index(&plan, request.after, request.max_entries, request.max_bytes)
                        .await
                }
                None => self.scan_table(request, true).await,
            },
            _ => self.scan_table(request, true).await,
        }
    }

    async fn probe_targets(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<ProbeTarget>, Option<String>), StoreError> {
        // Only the id, the URL and what decides whether a probe rewrites the entry travel, and
        // an eventually consistent read costs half.
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("#id, #url, #h.#st, #h.#hu, #h.#at, #h.#up")
            .expression_attribute_names("#id", KEY)
            .expression_attribute_names("#url", PUBLIC_URL)
            .expression_attribute_names("#h", HEALTH)
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#hu", "url")
            .expression_attribute_names("#at", "checked_at")
            .expression_attribute_names("#up", "uptime_30d")
            .consistent_read(false)
            .limit(i32::try_from(max.clamp(1, 10_000)).unwrap_or(10_000))
            .set_exclusive_start_key(after.map(key_of))
            .send()
            .await
            .map_err(sdk_error)?;
        let next = last_id(out.last_evaluated_key)?;
        let targets = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                Some(ProbeTarget {
                    id: string_attr(item, KEY)?,
                    url: string_attr(item, PUBLIC_URL)?,
                    last: item.get(HEALTH).and_then(last_health),
                })
            })
            .collect();
        Ok((targets, next))
    }

    async fn set_health(&self, id: &str, health: &ProbeResult) -> Result<bool, StoreError> {
        let new_status = health.status;
        let health = dynamo::to_attribute_value(health).map_err(|e| {
            StoreError::Unavailable(format!("cannot encode the health result: {e}"))
        })?;
        // One UpdateItem touches only the health field, so it never races an owner's update. A
        // retry of it after a lost answer is the same write again and its condition still holds:
        // unlike the entry's writes, it needs no token and no read back. It is conditional on the
        // verdict read just before; when the verdict changes, the verdict counters move in the
        // same transaction.
        let mut write = Write::new();
        let shard = pick_shard();
        let mut in_progress = false;
        for attempt in 0..ATTEMPTS {
            // The condition on the verdict read makes each try apply at most once (an earlier try
            // that applied makes it fail, and the next read sees its verdict), so each try is a
            // new request under a new token, but for one still in progress under its own.
            if attempt > 0 && !in_progress {
                write.renew_token();
            }
            let Some(old_status) = self.stored_status(id).await? else {
                return Ok(false);
            };
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key_of(id)))
                .update_expression("SET #h = :h")
                .expression_attribute_names("#h", HEALTH)
                .expression_attribute_names("#id", KEY)
                .expression_attribute_values(":h", health.clone());
            let update = match old_status {
                Some(old) => update
                    .condition_expression("attribute_exists(#id) AND #h.#hs = :old")
                    .expression_attribute_names("#hs", "status")
                    .expression_attribute_values(":old", s(old.as_str())),
                None => update
                    .condition_expression("attribute_exists(#id) AND attribute_not_exists(#h)"),
            }
            .build()
            .map_err(build_error)?;
            let outcome = if old_status == Some(new_status) {
                let mut item = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(update.key))
                    .update_expression(update.update_expression)
                    .set_condition_expression(update.condition_expression)
                    .set_expression_attribute_values(update.expression_attribute_values);
                for (k, v) in update.expression_attribute_names.unwrap_or_default() {
                    item = item.expression_attribute_names(k, v);
                }
                let result = item
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await;
                if let Ok(out) = &result {
                    self.count_write_units(out.consumed_capacity());
                }
                if condition_held(result)? {
                    Outcome::Done
                } else {
                    Outcome::ConditionFailed
                }
            } else {
                let status_key = |st: Option<crate::health::HealthStatus>| {
                    counts::keys_of(&[], None, None, st, false)
                };
                let delta =
                    CountDelta::between(&status_key(old_status), &status_key(Some(new_status)));
                let mut actions = vec![TransactWriteItem::builder().update(update).build()];
                actions.extend(self.count_actions(&delta, shard)?);
                self.transact(&mut write, actions).await?
            };
            in_progress = matches!(outcome, Outcome::InProgress);
            match outcome {
                Outcome::Done => {
                    // A changed verdict's transaction: the entry, the verdict counters.
                    self.count_health_units(write.units);
                    return Ok(true);
                }
                _ => backoff(attempt).await,
            }
        }
        Err(StoreError::VersionConflict)
    }

    async fn record_probe(
        &self,
        id: &str,
        day: Day,
        sample: ProbeSample,
    ) -> Result<bool, StoreError> {
        // One UpdateItem of a small item (about 200 bytes: one write unit), with ADD: DynamoDB
        // applies each atomically, so probes from several instances at once all count. A retry
        // after a lost answer may count a probe twice; never loses one.
        let mut expr = "ADD #v :one".to_string();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.history_table)
            .set_key(Some(HashMap::from([
                (KEY.to_string(), s(id)),
                (DAY.to_string(), s(&day.iso())),
            ])))
            .expression_attribute_names("#v", sample.status.as_str())
            .expression_attribute_names("#ttl", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(
                ":ttl",
                AttributeValue::N(day.epoch_secs_after(KEPT_DAYS).to_string()),
            );
        if let Some(ms) = sample.latency_ms {
            expr.push_str(", #b :one");
            request = request.expression_attribute_names("#b", bucket_attr(bucket_of(ms)));
        }
        expr.push_str(" SET #ttl = :ttl");
        let out = request
            .update_expression(expr)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(sdk_error)?;
        self.count_write_units(out.consumed_capacity());
        Ok(true)
    }

    async fn restore_history(&self, id: &str, days: &[(Day, DayCounts)]) -> Result<(), StoreError> {
        // Whole items, each day as given (a put replaces a day the table held), with their TTL.
        let mut puts = Vec::with_capacity(days.len());
        for (day, c) in days {
            let mut item = HashMap::from([
                (KEY.to_string(), s(id)),
                (DAY.to_string(), s(&day.iso())),
                (
                    EXPIRES_AT.to_string(),
                    AttributeValue::N(day.epoch_secs_after(KEPT_DAYS).to_string()),
                ),
            ]);
            for (status, count) in [
                (HealthStatus::Healthy, c.healthy),
                (HealthStatus::AuthRequired, c.auth_required),
                (HealthStatus::NotRegistry, c.not_registry),
                (HealthStatus::Unreachable, c.unreachable),
            ] {
                if count > 0 {
                    item.insert(status.as_str().to_string(), n(count));
                }
            }
            for (i, count) in c.latency.iter().enumerate() {
                if *count > 0 {
                    item.insert(bucket_attr(i), n(*count));
                }
            }
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(build_error)?;
            puts.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(&self.history_table, puts).await
    }

    async fn health_days(
        &self,
        id: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, DayCounts)>, StoreError> {
        let mut days = Vec::new();
        let mut start = None;
        // At most 90 items of about 200 bytes: one page, but follow LastEvaluatedKey anyway.
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.history_table)
                .key_condition_expression("#id = :id AND #d BETWEEN :from AND :to")
                .expression_attribute_names("#id", KEY)
                .expression_attribute_names("#d", DAY)
                .expression_attribute_values(":id", s(id))
                .expression_attribute_values(":from", s(&from.iso()))
                .expression_attribute_values(":to", s(&to.iso()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items() {
                if let Some(day) = string_attr(item, DAY).as_deref().and_then(Day::parse_iso) {
                    days.push((day, day_counts(item)));
                }
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(days),
            }
        }
    }

    async fn reindex_counted(
        &self,
        progress: Arc<ReindexProgress>,
    ) -> Result<ReindexReport, StoreError> {
        let mut report = ReindexReport::default();
        // DynamoDB's item count, updated about every six hours: "about" is all it can be.
        if let Ok(table) = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            && let Some(n) = table.table().and_then(|t| t.item_count())
        {
            progress.total.store(n.max(0) as u64, Ordering::Relaxed);
        }
        // 1. Every entry's id, tags and version, and the counters it contributes to.
        let mut entries: HashMap<String, (Vec<String>, AttributeValue)> = HashMap::new();
        let mut recount = Recount::default();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                progress.read.fetch_add(1, Ordering::Relaxed);
                if let Some(id) = string_attr(&item, KEY) {
                    let owned = string_attr(&item, OWNER).is_some();
                    if let Ok(entry) = from_item(item.clone()) {
                        recount.add(&counts::entry_keys(&entry, owned));
                    }
                    let version = item.get(VERSION).cloned().unwrap_or_else(|| n(0));
                    entries.insert(id, (item_tags(&item), version));
                }
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        report.entries = entries.len();
        // 2. Their index items (a put of an existing item changes nothing).
        let mut puts = Vec::new();
        for (id, (tags, _)) in &entries {
            for tag in tags {
                let put = PutRequest::builder()
                    .set_item(Some(index_key(tag, id)))
                    .build()
                    .map_err(build_error)?;
                puts.push(WriteRequest::builder().put_request(put).build());
            }
        }
        report.index_keys = puts.len();
        self.batch_write(&self.tag_table, puts).await?;
        // 3. Index items no entry calls for. Each is removed only if its entry is still at the
        // version read above (or gone): an entry updated since then keeps its index itself.
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.tag_table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                let (Some(tag), Some(id)) = (string_attr(&item, TAG), string_attr(&item, KEY))
                else {
                    continue;
                };
                if tag == INDEX_MARKER_TAG || is_counts_partition(&tag) {
                    continue;
                }
                let (wanted, guard) = match entries.get(&id) {
                    Some((tags, version)) => (tags.contains(&tag), Some(version.clone())),
                    None => (false, None),
                };
                if wanted {
                    continue;
                }
                let check = match guard {
                    Some(version) => ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_of(&id)))
                        .condition_expression("#v = :v")
                        .expression_attribute_names("#v", VERSION)
                        .expression_attribute_values(":v", version),
                    None => ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_of(&id)))
                        .condition_expression("attribute_not_exists(#id)")
                        .expression_attribute_names("#id", KEY),
                }
                .build()
                .map_err(build_error)?;
                let actions = vec![
                    TransactWriteItem::builder().condition_check(check).build(),
                    self.delete_index(&tag, &id)?,
                ];
                if matches!(
                    self.transact(&mut Write::new(), actions).await?,
                    Outcome::Done
                ) {
                    report.stale_keys_removed += 1;
                }
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        // 4. The kept counts: each counter that differs from the recount is moved by the
        // difference (an ADD to one shard). Writes during the recount may make it differ from
        // the truth by what they changed: run it while writes are quiet for an exact repair.
        let kept = self.read_counters().await?;
        let drift = recount.drift_from(&kept);
        let mut delta = CountDelta::default();
        for (key, had, now) in &drift.keys {
            delta.add(std::slice::from_ref(key), now - had);
        }
        let mut actions = self.count_actions(&delta, 0)?;
        while !actions.is_empty() {
            let rest = actions.split_off(actions.len().min(MAX_TRANSACT_ACTIONS));
            self.transact(&mut Write::new(), actions).await?;
            actions = rest;
        }
        report.set_drift(&drift);
        // 5. From now on queries may trust the index, and the facets of `{}` the counts.
        self.mark_index_complete().await?;
        self.mark_counts_complete().await?;
        Ok(report)
    }

    async fn export(&self, out: tokio::sync::mpsc::Sender<Exported>) -> Result<u64, StoreError> {
        let segments = (0..EXPORT_SEGMENTS).map(|segment| {
            let out = out.clone();
            async move {
                let mut after = None;
                let mut sent = 0u64;
                loop {
                    let page = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .consistent_read(true)
                        .segment(segment)
                        .total_segments(EXPORT_SEGMENTS)
                        .set_exclusive_start_key(after)
                        .send()
                        .await
                        .map_err(sdk_error)?;
                    for item in page.items.unwrap_or_default() {
                        // The owner is an attribute of the entry's own item: of the same read.
                        let owner = string_attr(&item, OWNER);
                        let exported = Exported {
                            entry: from_item(item)?,
                            owner,
                            history: Vec::new(),
                        };
                        if out.send(exported).await.is_err() {
                            return Ok(sent);
                        }
                        sent += 1;
                    }
                    match page.last_evaluated_key {
                        Some(key) => after = Some(key),
                        None => return Ok::<u64, StoreError>(sent),
                    }
                }
            }
        });
        let counts = futures::future::try_join_all(segments).await?;
        Ok(counts.into_iter().sum())
    }

    async fn kept_counts(&self) -> Result<Option<KeptCounts>, StoreError> {
        if !self.counts_ready().await? {
            return Ok(None);
        }
        let mut reader = CountReader::default();
        for (key, n) in self.read_counters().await? {
            reader.add(&key, u64::try_from(n).unwrap_or(0));
        }
        Ok(Some(reader.finish()))
    }

    async fn owner(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        // A consistent read on every call, nothing kept in the process: a rotation through any
        // instance counts for every other at once.
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .consistent_read(true)
            .projection_expression("#id, #o")
            .expression_attribute_names("#id", KEY)
            .expression_attribute_names("#o", OWNER)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item.map(|item| string_attr(&item, OWNER)))
    }

    async fn set_owner(
        &self,
        id: &str,
        expected: Option<&str>,
        owner: &str,
    ) -> Result<bool, StoreError> {
        // Conditional on the record that was read, so of two rotations from it exactly one lands.
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .update_expression("SET #o = :new")
            .expression_attribute_names("#id", KEY)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_values(":new", s(owner));
        let update = match expected {
            Some(expected) => update
                .condition_expression("attribute_exists(#id) AND #o = :old")
                .expression_attribute_values(":old", s(expected)),
            None => {
                update.condition_expression("attribute_exists(#id) AND attribute_not_exists(#o)")
            }
        };
        let held = match expected {
            Some(_) => condition_held(update.send().await)?,
            // A first owner: the owned counter moves with it, in one transaction.
            None => {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_of(id)))
                    .update_expression("SET #o = :new")
                    .expression_attribute_names("#id", KEY)
                    .expression_attribute_names("#o", OWNER)
                    .expression_attribute_values(":new", s(owner))
                    .condition_expression("attribute_exists(#id) AND attribute_not_exists(#o)")
                    .build()
                    .map_err(build_error)?;
                let mut delta = CountDelta::default();
                delta.add(&[counts::OWNED.to_string()], 1);
                let mut actions = vec![TransactWriteItem::builder().update(update).build()];
                actions.extend(self.count_actions(&delta, pick_shard())?);
                let mut write = Write::new();
                let mut held = false;
                for attempt in 0..ATTEMPTS {
                    match self.transact(&mut write, actions.clone()).await? {
                        Outcome::Done => {
                            held = true;
                            break;
                        }
                        // Ours, applied with its answer lost, when the owner is now this one.
                        Outcome::ConditionFailed => {
                            held = write.maybe_applied
                                && self.owner(id).await?.flatten().as_deref() == Some(owner);
                            break;
                        }
                        outcome => {
                            if !self.again(&mut write, &outcome, attempt).await {
                                break;
                            }
                        }
                    }
                }
                held
            }
        };
        if held {
            return Ok(true);
        }
        match self.owner(id).await? {
            None => Err(StoreError::NotFound(id.to_string())),
            Some(_) => Ok(false),
        }
    }

    fn describe(&self) -> String {
        format!(
            "DynamoDB table {} (tag index {})",
            self.table, self.tag_table
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entry::MAX_TAG_CHARS;

    #[test]
    fn the_index_marker_can_never_be_a_tag() {
        assert!(INDEX_MARKER_TAG.chars().count() > MAX_TAG_CHARS);
        assert!(!storable_tag(INDEX_MARKER_TAG));
    }
}
