//! The container registry entry: the seed's `ContainerRegistry` dataclass plus the fields the server
//! manages. A value of [`ContainerRegistry`] is valid by construction: the only ways to make one from
//! client input are [`ContainerRegistry::from_create`] and [`ContainerRegistry::from_update`], which
//! check every rule and say which field broke which one.

mod exact;
pub mod size;

pub use self::exact::export_line;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;
use utoipa::ToSchema;

use crate::health::limits::MAX_URL_BYTES;
use crate::health::{ProbeResult, parse_registry_url};
use crate::query::type_name;

pub const ID: &str = "container_registry_id";
pub const NAME: &str = "container_registry_name";
pub const METADATA: &str = "container_registry_metadata";
pub const TAGS: &str = "container_registry_tags";
pub const PUBLIC_URL: &str = "container_registry_public_url";
pub const IMAGE_PREFIX: &str = "container_registry_image_prefix";
pub const CONFIG: &str = "container_registry_config";
pub const STORAGE_INFO: &str = "container_registry_storage_info";
pub const CREATED_AT: &str = "container_registry_created_at";
pub const UPDATED_AT: &str = "container_registry_updated_at";
pub const VERSION: &str = "container_registry_version";
pub const HEALTH: &str = "container_registry_health";
/// The owner record (`domain::owner`). Never part of an entry's JSON: the stores keep it beside
/// the entry, and filters and writes that name it are refused.
pub const OWNER: &str = "container_registry_owner";

/// Fields a client writes (the seed's dataclass).
pub const CLIENT_FIELDS: [&str; 8] = [
    ID,
    NAME,
    METADATA,
    TAGS,
    PUBLIC_URL,
    IMAGE_PREFIX,
    CONFIG,
    STORAGE_INFO,
];
/// Fields only the server writes: returned on reads, refused on writes.
pub const MANAGED_FIELDS: [&str; 4] = [CREATED_AT, UPDATED_AT, VERSION, HEALTH];

/// Limits. The size of a whole entry is bounded in `size` (as JSON and as a DynamoDB item, with room
/// for its health record), so an entry the embedded store accepts is one DynamoDB accepts too.
pub use self::size::MAX_ENTRY_BYTES;
pub const MAX_ID_CHARS: usize = 128;
pub const MAX_NAME_CHARS: usize = 256;
/// The public URL in bytes (it is ASCII once normalized), as the probe reads it too; also the image
/// prefix in characters.
pub const MAX_URL_CHARS: usize = MAX_URL_BYTES;
/// One transaction of the DynamoDB store writes an entry, puts its new tags' index items and deletes
/// its old ones: 1 + 2 x 48 actions stay within DynamoDB's 100 per `TransactWriteItems`.
pub const MAX_TAGS: usize = 48;
pub const MAX_TAG_CHARS: usize = 64;
/// Nesting depth allowed inside `metadata` and `config` (DynamoDB allows 32 levels per item).
pub const MAX_NESTING: usize = 16;
pub const MAX_KEY_CHARS: usize = 255;

/// Defined beside the service's error type, whose `Invalid` case carries it.
pub use crate::error::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StorageType {
    S3,
    ObjectStore,
    Fs,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistryType {
    Aios,
    External,
}

/// `container_registry_storage_info`: every key is optional; the ones present must be valid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<StorageType>,
    /// In MB, or -1 for unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -1)]
    pub storage_size: Option<i64>,
    /// In MB, or -1 if unknown or unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -1)]
    pub memory_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_type: Option<RegistryType>,
}

/// One listed container registry, as stored and as returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContainerRegistry {
    /// Unique id (a UUID v4 made by the server when the client gives none).
    pub container_registry_id: String,
    pub container_registry_name: String,
    #[schema(value_type = Object)]
    pub container_registry_metadata: Map<String, Value>,
    pub container_registry_tags: Vec<String>,
    /// Absolute http(s) URL of the registry; `{url}/v2/` is its OCI API.
    pub container_registry_public_url: String,
    /// Prefix of image names, e.g. `10.13.21.22:32633`; derived from the URL when empty.
    pub container_registry_image_prefix: String,
    #[schema(value_type = Object)]
    pub container_registry_config: Map<String, Value>,
    pub container_registry_storage_info: StorageInfo,
    /// Server-managed: RFC 3339 UTC time of creation.
    pub container_registry_created_at: String,
    /// Server-managed: RFC 3339 UTC time of the last client update.
    pub container_registry_updated_at: String,
    /// Server-managed: incremented on every write; the optimistic-concurrency token.
    pub container_registry_version: u64,
    /// Server-managed: the last health probe's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_registry_health: Option<ProbeResult>,
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl ContainerRegistry {
    /// Parses a create request body. Managed fields are refused; a missing id becomes a UUID v4.
    pub fn from_create(body: Value) -> Result<Self, ValidationError> {
        let Value::Object(mut doc) = body else {
            return Err(ValidationError::new(
                "body",
                "must be a JSON object describing the registry",
            ));
        };
        for field in MANAGED_FIELDS.into_iter().chain([OWNER]) {
            if doc.contains_key(field) {
                return Err(ValidationError::new(
                    field,
                    "is managed by the server and cannot be written",
                ));
            }
        }
        match doc.get(ID) {
            None | Some(Value::Null) => {
                doc.insert(ID.into(), Value::String(uuid::Uuid::new_v4().to_string()));
            }
            Some(_) => {}
        }
        let now = now_rfc3339();
        let client = ClientFields::parse(doc)?;
        client.into_entry(now.clone(), now, 1, None)
    }

    /// Builds the entry that results from applying an update to `old`. `doc` is `old` as JSON
    /// with the update applied. The id and the managed fields must be unchanged.
    pub fn from_update(doc: Value, old: &ContainerRegistry) -> Result<Self, ValidationError> {
        let Value::Object(mut doc) = doc else {
            return Err(ValidationError::new(
                "body",
                "the updated entry must stay a JSON object",
            ));
        };
        let old_doc = old.to_json();
        if doc.get(ID) != old_doc.get(ID) {
            return Err(ValidationError::new(ID, "cannot be changed by an update"));
        }
        if doc.contains_key(OWNER) {
            return Err(ValidationError::new(
                OWNER,
                "is managed by the server and cannot be written",
            ));
        }
        for field in MANAGED_FIELDS {
            if doc.remove(field).as_ref() != old_doc.get(field) {
                return Err(ValidationError::new(
                    field,
                    "is managed by the server and cannot be written",
                ));
            }
        }
        let client = ClientFields::parse(doc)?;
        client.into_entry(
            old.container_registry_created_at.clone(),
            now_rfc3339(),
            old.container_registry_version + 1,
            // A record stored before the caps existed is cut to them, so it fits the reserve.
            old.container_registry_health
                .clone()
                .map(ProbeResult::bounded),
        )
    }

    pub fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // A struct of strings, maps and numbers always serializes to an object.
            _ => unreachable!("ContainerRegistry serializes to a JSON object"),
        }
    }
}

/// The client-written fields, checked.
struct ClientFields {
    id: String,
    name: String,
    metadata: Map<String, Value>,
    tags: Vec<String>,
    public_url: String,
    image_prefix: String,
    config: Map<String, Value>,
    storage_info: StorageInfo,
}

impl ClientFields {
    fn parse(mut doc: Map<String, Value>) -> Result<Self, ValidationError> {
        if let Some(unknown) = doc.keys().find(|k| !CLIENT_FIELDS.contains(&k.as_str())) {
            return Err(ValidationError::new(
                unknown.clone(),
                format!(
                    "is not a field of a container registry entry (known fields: {})",
                    CLIENT_FIELDS.join(", ")
                ),
            ));
        }
        let id = parse_id(doc.remove(ID))?;
        let name = required_string(&mut doc, NAME, MAX_NAME_CHARS)?;
        if name.trim().is_empty() {
            return Err(ValidationError::new(NAME, "must not be blank"));
        }
        let metadata = object_field(&mut doc, METADATA)?;
        let config = object_field(&mut doc, CONFIG)?;
        let tags = parse_tags(doc.remove(TAGS))?;
        let public_url = required_string(&mut doc, PUBLIC_URL, MAX_URL_CHARS)?;
        let (url, public_url) = parse_public_url(&public_url)?;
        let image_prefix = match doc.remove(IMAGE_PREFIX) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(other) => return Err(type_error(IMAGE_PREFIX, "a string", &other)),
        };
        let image_prefix = if image_prefix.trim().is_empty() {
            derive_image_prefix(&url)
        } else {
            image_prefix
        };
        if image_prefix.chars().count() > MAX_URL_CHARS {
            return Err(ValidationError::new(
                IMAGE_PREFIX,
                format!("must be at most {MAX_URL_CHARS} characters"),
            ));
        }
        let storage_info = parse_storage_info(doc.remove(STORAGE_INFO))?;
        Ok(ClientFields {
            id,
            name,
            metadata,
            tags,
            public_url,
            image_prefix,
            config,
            storage_info,
        })
    }

    fn into_entry(
        self,
        created_at: String,
        updated_at: String,
        version: u64,
        health: Option<ProbeResult>,
    ) -> Result<ContainerRegistry, ValidationError> {
        let entry = ContainerRegistry {
            container_registry_id: self.id,
            container_registry_name: self.name,
            container_registry_metadata: self.metadata,
            container_registry_tags: self.tags,
            container_registry_public_url: self.public_url,
            container_registry_image_prefix: self.image_prefix,
            container_registry_config: self.config,
            container_registry_storage_info: self.storage_info,
            container_registry_created_at: created_at,
            container_registry_updated_at: updated_at,
            container_registry_version: version,
            container_registry_health: health,
        };
        self::size::check(&entry.to_json())?;
        Ok(entry)
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> ValidationError {
    ValidationError::new(field, format!("must be {expected}, not {}", type_name(got)))
}

fn parse_id(v: Option<Value>) -> Result<String, ValidationError> {
    let id = match v {
        Some(Value::String(s)) => s,
        Some(other) => return Err(type_error(ID, "a string", &other)),
        None => return Err(ValidationError::new(ID, "is required")),
    };
    validate_id(&id).map_err(|m| ValidationError::new(ID, m))?;
    Ok(id)
}

/// Ids travel in URL paths, so they are limited to characters that need no escaping there.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_CHARS {
        return Err(format!("must be 1 to {MAX_ID_CHARS} characters long"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
        || id == "."
        || id == ".."
    {
        return Err("may contain only ASCII letters, digits, '-', '_', '.' and '~'".into());
    }
    Ok(())
}

fn required_string(
    doc: &mut Map<String, Value>,
    field: &str,
    max_chars: usize,
) -> Result<String, ValidationError> {
    match doc.remove(field) {
        Some(Value::String(s)) if s.chars().count() > max_chars => Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters"),
        )),
        Some(Value::String(s)) if s.is_empty() => Err(ValidationError::new(
            field,
            "is required and must not be empty",
        )),
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ValidationError::new(field, "is required")),
        Some(other) => Err(type_error(field, "a string", &other)),
    }
}

fn object_field(
    doc: &mut Map<String, Value>,
    field: &str,
) -> Result<Map<String, Value>, ValidationError> {
    match doc.remove(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => {
            check_nested(&map, &|| field.to_string(), 1)?;
            Ok(map)
        }
        Some(other) => Err(type_error(field, "an object", &other)),
    }
}

/// Nesting depth, key names and numbers must be storable the same way in both stores. The path of
/// a value is spelled out only when it breaks a rule: entries may hold many thousands of values.
fn check_nested(
    map: &Map<String, Value>,
    path: &dyn Fn() -> String,
    depth: usize,
) -> Result<(), ValidationError> {
    for (k, v) in map {
        if k.is_empty() || k.chars().count() > MAX_KEY_CHARS {
            return Err(ValidationError::new(
                path(),
                format!("keys must be 1 to {MAX_KEY_CHARS} characters long"),
            ));
        }
        check_value(v, &|| format!("{}.{k}", path()), depth)?;
    }
    Ok(())
}

fn check_value(v: &Value, path: &dyn Fn() -> String, depth: usize) -> Result<(), ValidationError> {
    if depth > MAX_NESTING {
        return Err(ValidationError::new(
            path(),
            format!("nests deeper than {MAX_NESTING} levels"),
        ));
    }
    match v {
        Value::Object(m) => check_nested(m, path, depth + 1),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_value(item, &|| format!("{}.{i}", path()), depth + 1)),
        Value::Number(n) => check_number(n, path),
        _ => Ok(()),
    }
}

/// DynamoDB numbers hold magnitudes from 1e-130 to below 1e126; refusing others keeps both stores alike.
fn check_number(n: &serde_json::Number, path: &dyn Fn() -> String) -> Result<(), ValidationError> {
    if let Some(f) = n.as_f64()
        && !n.is_i64()
        && !n.is_u64()
        && f != 0.0
        && !(1e-130..1e126).contains(&f.abs())
    {
        return Err(ValidationError::new(
            path(),
            format!(
                "the number {n} is outside the range an entry can store (1e-130 to 1e126 in magnitude)"
            ),
        ));
    }
    Ok(())
}

fn parse_tags(v: Option<Value>) -> Result<Vec<String>, ValidationError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(type_error(TAGS, "an array of strings", &other)),
    };
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::String(tag) = item else {
            return Err(ValidationError::new(
                TAGS,
                format!(
                    "must be an array of strings; element {i} is {}",
                    type_name(&item)
                ),
            ));
        };
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
            return Err(ValidationError::new(
                TAGS,
                format!("each tag must be 1 to {MAX_TAG_CHARS} characters; element {i} is not"),
            ));
        }
        // Duplicates are removed, keeping the first occurrence's position.
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::new(
            TAGS,
            format!("may hold at most {MAX_TAGS} distinct tags"),
        ));
    }
    Ok(tags)
}

/// The URL as the probe will read it (one function for both: `health::parse_registry_url`), and the
/// normalized form to store, which reads back as the same URL.
fn parse_public_url(s: &str) -> Result<(Url, String), ValidationError> {
    let url = parse_registry_url(s).map_err(|e| ValidationError::new(PUBLIC_URL, e))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ValidationError::new(
            PUBLIC_URL,
            "must not carry credentials (user:password@); the listing is public",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ValidationError::new(
            PUBLIC_URL,
            "must not have a query or a fragment; the OCI API lives at {url}/v2/",
        ));
    }
    let stored = crate::health::target::normalized(s, &url);
    if stored.len() > MAX_URL_CHARS {
        return Err(ValidationError::new(
            PUBLIC_URL,
            format!("must be at most {MAX_URL_CHARS} bytes long once normalized"),
        ));
    }
    Ok((url, stored))
}

/// `http://10.13.21.22:32633` gives `10.13.21.22:32633`; a default port is left out.
fn derive_image_prefix(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn parse_storage_info(v: Option<Value>) -> Result<StorageInfo, ValidationError> {
    let map = match v {
        None | Some(Value::Null) => return Ok(StorageInfo::default()),
        Some(Value::Object(map)) => map,
        Some(other) => return Err(type_error(STORAGE_INFO, "an object", &other)),
    };
    let mut info = StorageInfo::default();
    for (key, value) in map {
        let field = format!("{STORAGE_INFO}.{key}");
        match key.as_str() {
            "storage_type" => {
                info.storage_type = Some(enum_value(
                    &field,
                    value,
                    "one of s3, object-store, fs, unknown",
                )?);
            }
            "registry_type" => {
                info.registry_type = Some(enum_value(&field, value, "one of aios, external")?);
            }
            "storage_size" => info.storage_size = Some(size_mb(&field, &value)?),
            "memory_size" => info.memory_size = Some(size_mb(&field, &value)?),
            _ => {
                return Err(ValidationError::new(
                    field,
                    "is not a storage info key (known: storage_type, storage_size, memory_size, registry_type)",
                ));
            }
        }
    }
    Ok(info)
}

fn enum_value<T: serde::de::DeserializeOwned>(
    field: &str,
    value: Value,
    expected: &str,
) -> Result<T, ValidationError> {
    let shown = value.to_string();
    serde_json::from_value(value)
        .map_err(|_| ValidationError::new(field, format!("must be {expected}, not {shown}")))
}

fn size_mb(field: &str, value: &Value) -> Result<i64, ValidationError> {
    match value.as_i64() {
        Some(n) if n >= -1 => Ok(n),
        _ => Err(ValidationError::new(
            field,
            format!("must be a whole number of MB, or -1 for unlimited, not {value}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The seed's example entry, the same file the README's curl sends.
    pub(crate) fn seed() -> Value {
        serde_json::from_str(include_str!("../../../docs/seed-entry.json")).unwrap()
    }

    fn field_of(body: Value) -> String {
        ContainerRegistry::from_create(body).unwrap_err().field
    }

    #[test]
    fn seed_example_is_accepted_as_it_stands() {
        let e = ContainerRegistry::from_create(seed()).unwrap();
        assert_eq!(
            e.container_registry_id,
            "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509"
        );
        assert_eq!(e.container_registry_version, 1);
        let back = e.to_json();
        for (k, v) in seed().as_object().unwrap() {
            assert_eq!(back.get(k), Some(v), "field {k} round-trips");
        }
    }

    #[test]
    fn missing_id_gets_a_uuid_v4() {
        let mut body = seed();
        body.as_object_mut().unwrap().remove(ID);
        let e = ContainerRegistry::from_create(body).unwrap();
        let id = uuid::Uuid::parse_str(&e.container_registry_id).unwrap();
        assert_eq!(id.get_version_num(), 4);
    }

    #[test]
    fn image_prefix_is_derived_from_the_url_when_empty() {
        let mut body = seed();
        body[IMAGE_PREFIX] = json!("");
        assert_eq!(
            ContainerRegistry::from_create(body.clone())
                .unwrap()
                .container_registry_image_prefix,
            "10.13.21.22:32633"
        );
        body[PUBLIC_URL] = json!("https://registry.example.com/");
        assert_eq!(
            ContainerRegistry::from_create(body)
                .unwrap()
                .container_registry_image_prefix,
            "registry.example.com"
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (NAME, Value::Null, NAME),
            (NAME, json!("   "), NAME),
            (NAME, json!(5), NAME),
            (PUBLIC_URL, json!("ftp://x"), PUBLIC_URL),
            (PUBLIC_URL, json!("registry.example.com"), PUBLIC_URL),
            (PUBLIC_URL, json!("http://user:pw@h:5000"), PUBLIC_URL),
            (TAGS, json!("ai"), TAGS),
            (TAGS, json!(["ai", 3]), TAGS),
            (TAGS, json!([""]), TAGS),
            (METADATA, json!([1]), METADATA),
            (
                STORAGE_INFO,
                json!({"storage_type": "tape"}),
                "container_registry_storage_info.storage_type",
            ),
            (
                STORAGE_INFO,
                json!({"registry_type": "mine"}),
                "container_registry_storage_info.registry_type",
            ),
            (
                STORAGE_INFO,
                json!({"storage_size": -2}),
                "container_registry_storage_info.storage_size",
            ),
            (
                STORAGE_INFO,
                json!({"memory_size": 1.5}),
                "container_registry_storage_info.memory_size",
            ),
            (
                STORAGE_INFO,
                json!({"storage_tpe": "s3"}),
                "container_registry_storage_info.storage_tpe",
            ),
            (ID, json!("a/b"), ID),
            (ID, json!(7), ID),
            (CONFIG, json!({"x": 1e300}), "container_registry_config.x"),
        ];
        for (field, value, named) in cases {
            let mut body = seed();
            body[field] = value.clone();
            assert_eq!(field_of(body), named, "{field} = {value}");
        }
        let mut body = seed();
        body["colour"] = json!("blue");
        assert_eq!(field_of(body), "colour");
        let mut body = seed();
        body[VERSION] = json!(9);
        assert_eq!(field_of(body), VERSION);
    }

    #[test]
    fn duplicate_tags_are_removed_in_order() {
        let mut body = seed();
        body[TAGS] = json!(["b", "a", "b", "c", "a"]);
        assert_eq!(
            ContainerRegistry::from_create(body)
                .unwrap()
                .container_registry_tags,
            ["b", "a", "c"]
        );
    }

    #[test]
    fn oversized_entries_are_refused() {
        let mut body = seed();
        body[METADATA] = json!({"blob": "x".repeat(MAX_ENTRY_BYTES)});
        assert_eq!(field_of(body), "entry");
    }

    #[test]
    fn update_cannot_change_id_or_managed_fields() {
        let old = ContainerRegistry::from_create(seed()).unwrap();
        let mut doc = Value::Object(old.to_json());
        doc[ID] = json!("other");
        assert_eq!(
            ContainerRegistry::from_update(doc, &old).unwrap_err().field,
            ID
        );
        let mut doc = Value::Object(old.to_json());
        doc[VERSION] = json!(42);
        assert_eq!(
            ContainerRegistry::from_update(doc, &old).unwrap_err().field,
            VERSION
        );
        let mut doc = Value::Object(old.to_json());
        doc[NAME] = json!("renamed");
        let new = ContainerRegistry::from_update(doc, &old).unwrap();
        assert_eq!(new.container_registry_version, 2);
        assert_eq!(
            new.container_registry_created_at,
            old.container_registry_created_at
        );
    }
}
