//! The response envelopes, as types: handlers build them, and the OpenAPI document is derived from
//! them, so what the document promises is what the server sends.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::domain::catalog::Facets;
use crate::domain::entry::{ContainerRegistry, StorageInfo};
use crate::health::{ImageLookup, ProbeResult};

/// The body of a create request: the seed's `ContainerRegistry` fields. Only the name and the
/// public URL are required; server-managed fields are refused.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
  "container_registry_id": "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509",
  "container_registry_name": "internal-ai-registry",
  "container_registry_metadata": {"environment": "production", "owner": "mlops-team", "region": "us-west-2"},
  "container_registry_tags": ["ai", "training", "internal", "fast-pull"],
  "container_registry_public_url": "http://10.13.21.22:32633",
  "container_registry_image_prefix": "10.13.21.22:32633",
  "container_registry_config": {"auth_required": true, "mirror_enabled": false, "storage_backend": "s3", "max_layer_size_mb": 500},
  "container_registry_storage_info": {"storage_type": "s3", "storage_size": -1, "memory_size": 8192, "registry_type": "aios"}
}))]
pub struct NewContainerRegistry {
    /// A UUID v4 is made when absent. Letters, digits, `-`, `_`, `.`, `~`; at most 128.
    #[schema(max_length = 128, pattern = r"^[A-Za-z0-9._~-]+$")]
    pub container_registry_id: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    pub container_registry_name: String,
    #[schema(value_type = Option<Object>)]
    pub container_registry_metadata: Option<Map<String, Value>>,
    /// Duplicates are removed.
    #[schema(max_items = 48)]
    pub container_registry_tags: Option<Vec<String>>,
    /// Absolute http(s) URL without credentials, query or fragment.
    #[schema(max_length = 2048, pattern = r"^https?://")]
    pub container_registry_public_url: String,
    /// Derived from the public URL's host and port when empty.
    pub container_registry_image_prefix: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub container_registry_config: Option<Map<String, Value>>,
    pub container_registry_storage_info: Option<StorageInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedData {
    pub message: String,
    /// The registry id (never a database-internal id).
    pub id: String,
    /// Under `--writes owners`: the entry's owner token, shown this once (the service keeps only
    /// its hash). Absent under the other policies and for an IAM principal, which owns the entry
    /// itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OwnerTokenData {
    /// The entry's new owner token, shown this once; the previous one no longer works.
    pub owner_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct OwnerTokenResponse {
    pub success: bool,
    pub data: OwnerTokenData,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedResponse {
    pub success: bool,
    pub data: CreatedData,
}

#[derive(Serialize, ToSchema)]
pub struct EntryResponse {
    pub success: bool,
    pub data: ContainerRegistry,
}

#[derive(Serialize, ToSchema)]
pub struct UpdatedData {
    pub message: String,
    pub id: String,
    /// The entry after the update.
    pub entry: ContainerRegistry,
}

#[derive(Serialize, ToSchema)]
pub struct UpdatedResponse {
    pub success: bool,
    pub data: UpdatedData,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedData {
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedResponse {
    pub success: bool,
    pub data: DeletedData,
}

#[derive(Serialize, ToSchema)]
pub struct EntriesResponse {
    pub success: bool,
    pub data: Vec<ContainerRegistry>,
    /// Pass as `?cursor=` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryResponse {
    pub success: bool,
    pub data: crate::domain::history::History,
}

#[derive(Serialize, ToSchema)]
pub struct FacetsResponse {
    pub success: bool,
    pub data: Facets,
}

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    pub success: bool,
    pub data: ProbeResult,
}

#[derive(Serialize, ToSchema)]
pub struct LivenessData {
    pub status: String,
    pub version: String,
}

#[derive(Serialize, ToSchema)]
pub struct LivenessResponse {
    pub success: bool,
    pub data: LivenessData,
}

/// Every failure: `success` is false, `error` is a sentence a person can act on, `code` is stable.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    pub success: bool,
    pub error: String,
    pub code: String,
    /// Extra detail: the field that broke a rule, or a health probe result.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ImageResponse {
    pub success: bool,
    pub data: ImageLookup,
}

/// One registry's answer in `POST /container_registries/images`.
#[derive(Serialize, ToSchema)]
pub struct ImageItem {
    pub container_registry_id: String,
    pub container_registry_name: String,
    #[serde(flatten)]
    pub lookup: ImageLookup,
}

#[derive(Serialize, ToSchema)]
pub struct ImagesResponse {
    pub success: bool,
    pub data: Vec<ImageItem>,
    /// The cursor of the next page of matching registries, or null.
    pub next_cursor: Option<String>,
}

/// The body of `POST /container_registries/images`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"image": "app:1.0", "filter": {"container_registry_tags": "ai"}}))]
pub struct ImagesRequest {
    /// `NAME:TAG` or `NAME@sha256:...`, under each registry's image prefix.
    pub image: String,
    /// A filter of the registries to ask (as for `POST /container_registries`); absent: all.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Read each index's platforms.
    pub platforms: Option<bool>,
}
