//! The DynamoDB store. One item per entry, keyed by `container_registry_id` (the key schema
//! `template.yaml` declares); every write is conditional, so no write is lost or half-applied:
//! create requires the id to be absent, replace requires the version it read, delete requires
//! presence, and the health result is written with one `UpdateItem`.
//!
//! Queries are Scans with as much of the filter as DynamoDB can express pushed down as a
//! `FilterExpression` (see `filter.rs`); the domain re-checks every returned item exactly.

pub mod filter;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use serde_dynamo::aws_sdk_dynamodb_1 as dynamo;

use self::filter::TranslateOptions;
use super::{ScanChunk, Store, StoreError};
use crate::domain::entry::{ContainerRegistry, HEALTH, ID, VERSION};
use crate::health::ProbeResult;
use crate::query::Filter;

/// The partition key attribute, also the entry's id field.
pub const KEY: &str = ID;

pub struct DynamoStore {
    client: Client,
    table: String,
    pushdown: TranslateOptions,
}

fn sdk_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("DynamoDB: {}", DisplayErrorContext(&err)))
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

fn key_of(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(KEY.to_string(), AttributeValue::S(id.to_string()))])
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<ContainerRegistry, StoreError> {
    dynamo::from_item(item)
        .map_err(|e| StoreError::Unavailable(format!("a stored item is not a valid entry: {e}")))
}

fn to_item(entry: &ContainerRegistry) -> Result<HashMap<String, AttributeValue>, StoreError> {
    dynamo::to_item(entry)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode the entry for DynamoDB: {e}")))
}

impl DynamoStore {
    /// A client configured from the usual AWS settings (`AWS_ENDPOINT_URL_DYNAMODB`, region,
    /// credentials). With `create_table`, a missing table is created with the template's key schema.
    pub async fn connect(table: &str, create_table: bool) -> anyhow::Result<Self> {
        let config = aws_config::load_from_env().await;
        // A custom endpoint may be an emulator (dynalite's `contains` does not search lists): push
        // down list membership only against AWS itself. Either way the answer is exact.
        let pushdown = if config.endpoint_url().is_some() {
            TranslateOptions::DYNALITE
        } else {
            TranslateOptions::DYNAMODB
        };
        let store = DynamoStore {
            client: Client::new(&config),
            table: table.to_string(),
            pushdown,
        };
        if create_table {
            store.ensure_table().await?;
        }
        Ok(store)
    }

    pub fn from_client(client: Client, table: &str, pushdown: TranslateOptions) -> Self {
        DynamoStore {
            client,
            table: table.to_string(),
            pushdown,
        }
    }

    /// Creates the table when it does not exist (on-demand billing), and waits until it is active.
    pub async fn ensure_table(&self) -> anyhow::Result<()> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(KEY)
                            .attribute_type(ScalarAttributeType::S)
                            .build()?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(KEY)
                            .key_type(KeyType::Hash)
                            .build()?,
                    )
                    .send()
                    .await;
                if let Err(err) = created
                    && !err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_in_use_exception())
                {
                    anyhow::bail!(
                        "cannot create DynamoDB table {}: {}",
                        self.table,
                        DisplayErrorContext(&err)
                    );
                }
            }
            Err(err) => anyhow::bail!(
                "cannot reach DynamoDB table {}: {}",
                self.table,
                DisplayErrorContext(&err)
            ),
        }
        for _ in 0..120 {
            let desc = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await?;
            if desc.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!(
            "DynamoDB table {} did not become active within a minute",
            self.table
        )
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(entry)?))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", KEY)
            .send()
            .await;
        if condition_held(result)? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(
                entry.container_registry_id.clone(),
            ))
        }
    }

    async fn get(&self, id: &str) -> Result<Option<ContainerRegistry>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.item.map(from_item).transpose()
    }

    async fn replace(
        &self,
        entry: &ContainerRegistry,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(entry)?))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":v", AttributeValue::N(expected_version.to_string()))
            .send()
            .await;
        if condition_held(result)? {
            Ok(())
        } else {
            Err(StoreError::VersionConflict)
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#id", KEY)
            .send()
            .await;
        condition_held(result)
    }

    async fn scan(
        &self,
        filter: &Filter,
        after: Option<&str>,
        max_scanned: usize,
    ) -> Result<ScanChunk, StoreError> {
        let pushdown = filter::translate_with(filter, &self.pushdown);
        let mut request = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .limit(i32::try_from(max_scanned.clamp(1, 10_000)).unwrap_or(10_000))
            .set_exclusive_start_key(after.map(key_of));
        if let Some(expr) = pushdown {
            let mut values = HashMap::with_capacity(expr.values.len());
            for (name, value) in expr.values {
                let value = dynamo::to_attribute_value(value).map_err(|e| {
                    StoreError::Unavailable(format!("cannot encode a filter value: {e}"))
                })?;
                values.insert(name, value);
            }
            request = request
                .filter_expression(expr.expression)
                .set_expression_attribute_names((!expr.names.is_empty()).then_some(expr.names))
                .set_expression_attribute_values((!values.is_empty()).then_some(values));
        }
        let out = request.send().await.map_err(sdk_error)?;
        let scanned = usize::try_from(out.scanned_count).unwrap_or(0);
        let last_key = match out.last_evaluated_key {
            Some(key) => match key.get(KEY) {
                Some(AttributeValue::S(id)) => Some(id.clone()),
                _ => {
                    return Err(StoreError::Unavailable(
                        "DynamoDB returned a LastEvaluatedKey without the id".into(),
                    ));
                }
            },
            None => None,
        };
        let candidates = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScanChunk {
            candidates,
            last_key,
            scanned,
        })
    }

    async fn set_health(&self, id: &str, health: &ProbeResult) -> Result<bool, StoreError> {
        let health = dynamo::to_attribute_value(health).map_err(|e| {
            StoreError::Unavailable(format!("cannot encode the health result: {e}"))
        })?;
        // One UpdateItem touches only the health field; the version bump makes a concurrent
        // read-modify-write of the entry retry instead of writing back an older health result.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id)))
            .update_expression("SET #h = :h, #v = #v + :one")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#h", HEALTH)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_names("#id", KEY)
            .expression_attribute_values(":h", health)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await;
        condition_held(result)
    }

    fn describe(&self) -> String {
        format!("DynamoDB table {}", self.table)
    }
}
