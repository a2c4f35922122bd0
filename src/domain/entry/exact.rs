//! An entry as a backup holds it, managed fields included: what `registry-db export` writes and
//! `import --exact` reads back. Reading one checks the managed fields as strictly as the client's
//! (a malformed time, a version that is not a whole number, a health record of the wrong shape is
//! refused, naming the field), so a restore never stores what the service could not have written.

use serde_json::{Map, Value};

use super::{
    CREATED_AT, ClientFields, ContainerRegistry, HEALTH, MANAGED_FIELDS, OWNER, UPDATED_AT,
    VERSION, type_error,
};
use crate::domain::history::{BUCKETS, Day, DayCounts, KEPT_DAYS};
use crate::domain::owner::is_owner_record;
use crate::domain::store::Exported;
use crate::error::ValidationError;
use crate::health::ProbeResult;

impl ContainerRegistry {
    /// Parses one exported entry, keeping its managed fields as they are.
    pub fn from_export(doc: Value) -> Result<Self, ValidationError> {
        let Value::Object(mut doc) = doc else {
            return Err(ValidationError::new(
                "entry",
                "each line must be a JSON object (an entry as `registry-db export` writes it)",
            ));
        };
        let created_at = time(&mut doc, CREATED_AT)?;
        let updated_at = time(&mut doc, UPDATED_AT)?;
        let version = match doc.remove(VERSION) {
            Some(Value::Number(n)) => n.as_u64().filter(|v| *v >= 1).ok_or_else(|| {
                ValidationError::new(VERSION, format!("must be a whole number from 1, not {n}"))
            })?,
            Some(other) => return Err(type_error(VERSION, "a whole number", &other)),
            None => return Err(ValidationError::new(VERSION, "is required")),
        };
        let health = match doc.remove(HEALTH) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let record: ProbeResult = serde_json::from_value(v).map_err(|e| {
                    ValidationError::new(HEALTH, format!("is not a health record: {e}"))
                })?;
                // A record the service wrote is within the caps; one that is not was not.
                if record.clone().bounded() != record {
                    return Err(ValidationError::new(
                        HEALTH,
                        "holds text over the caps the service keeps to",
                    ));
                }
                Some(record)
            }
        };
        debug_assert!(MANAGED_FIELDS.iter().all(|f| !doc.contains_key(*f)));
        ClientFields::parse(doc)?.into_entry(created_at, updated_at, version, health)
    }
}

/// A required RFC 3339 time, as the service writes them.
fn time(doc: &mut Map<String, Value>, field: &str) -> Result<String, ValidationError> {
    match doc.remove(field) {
        Some(Value::String(s)) => match chrono::DateTime::parse_from_rfc3339(&s) {
            Ok(_) => Ok(s),
            Err(e) => Err(ValidationError::new(
                field,
                format!("must be an RFC 3339 time, not {s:?} ({e})"),
            )),
        },
        Some(other) => Err(type_error(field, "an RFC 3339 time", &other)),
        None => Err(ValidationError::new(field, "is required")),
    }
}

impl Exported {
    /// Parses one line of an export: the entry with its managed fields, and its owner record
    /// (`container_registry_owner`, a hash or an IAM principal, never a token), refused unless
    /// shaped as the service writes them.
    pub fn from_export(doc: Value) -> Result<Self, ValidationError> {
        let mut doc = doc;
        let owner = match doc.as_object_mut().and_then(|d| d.remove(OWNER)) {
            None | Some(Value::Null) => None,
            Some(Value::String(record)) if is_owner_record(&record) => Some(record),
            Some(Value::String(_)) => {
                return Err(ValidationError::new(
                    OWNER,
                    "must be an owner record as `registry-db export` writes it (sha256: and 64 \
                     lowercase hex digits, or iam: and an ARN)",
                ));
            }
            Some(other) => return Err(type_error(OWNER, "an owner record", &other)),
        };
        let history = match doc.as_object_mut().and_then(|d| d.remove(HISTORY)) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => parse_history(v)?,
        };
        Ok(Exported {
            entry: ContainerRegistry::from_export(doc)?,
            owner,
            history,
        })
    }
}

/// Where an export line holds the entry's health history: days in date order, each
/// `{"date", "healthy", "auth_required", "not_registry", "unreachable", "latency": [11 counts]}`.
pub const HISTORY: &str = "container_registry_health_history";

fn parse_history(v: Value) -> Result<Vec<(Day, DayCounts)>, ValidationError> {
    let bad = |why: String| ValidationError::new(HISTORY, why);
    let Value::Array(days) = v else {
        return Err(type_error(HISTORY, "a list of days", &v));
    };
    if days.len() > KEPT_DAYS as usize {
        return Err(bad(format!(
            "holds {} days, more than the {KEPT_DAYS} kept",
            days.len()
        )));
    }
    let mut out: Vec<(Day, DayCounts)> = Vec::with_capacity(days.len());
    for (i, day) in days.into_iter().enumerate() {
        let Value::Object(mut day) = day else {
            return Err(bad(format!("day {i} is not an object")));
        };
        let date = match day.remove("date") {
            Some(Value::String(d)) => Day::parse_iso(&d)
                .ok_or_else(|| bad(format!("day {i}: {d:?} is not a YYYY-MM-DD date")))?,
            _ => return Err(bad(format!("day {i}: date is required"))),
        };
        if out.last().is_some_and(|(last, _)| last.0 >= date.0) {
            return Err(bad(format!(
                "day {i}: the days must be in date order, each once"
            )));
        }
        let mut count = |name: &str| match day.remove(name) {
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| bad(format!("day {i}: {name} must be a whole number"))),
            _ => Err(bad(format!("day {i}: {name} is required"))),
        };
        let mut c = DayCounts {
            healthy: count("healthy")?,
            auth_required: count("auth_required")?,
            not_registry: count("not_registry")?,
            unreachable: count("unreachable")?,
            ..Default::default()
        };
        match day.remove("latency") {
            Some(Value::Array(buckets)) if buckets.len() == BUCKETS => {
                for (slot, b) in c.latency.iter_mut().zip(buckets) {
                    *slot = b.as_u64().ok_or_else(|| {
                        bad(format!(
                            "day {i}: latency holds something not a whole number"
                        ))
                    })?;
                }
            }
            _ => {
                return Err(bad(format!(
                    "day {i}: latency must be a list of {BUCKETS} whole numbers"
                )));
            }
        }
        if let Some(other) = day.keys().next() {
            return Err(bad(format!("day {i}: {other} is not a field of a day")));
        }
        out.push((date, c));
    }
    Ok(out)
}

fn history_json(days: &[(Day, DayCounts)]) -> Value {
    Value::Array(
        days.iter()
            .map(|(day, c)| {
                serde_json::json!({
                    "date": day.iso(),
                    "healthy": c.healthy,
                    "auth_required": c.auth_required,
                    "not_registry": c.not_registry,
                    "unreachable": c.unreachable,
                    "latency": c.latency.to_vec(),
                })
            })
            .collect(),
    )
}

/// The line `export` writes for an entry: its JSON with every object's keys sorted, so that the
/// same entry gives the same bytes from either store (DynamoDB keeps no order of a map's keys),
/// and its owner record when it has one (a hash, never a token: what a restore needs to keep the
/// entry's owner, and nothing that lets a reader of the backup write as them).
pub fn export_line(exported: &Exported, out: &mut Vec<u8>) {
    let mut value = serde_json::to_value(&exported.entry).expect("an entry serializes");
    if let Value::Object(map) = &mut value {
        if let Some(owner) = &exported.owner {
            map.insert(OWNER.to_string(), Value::String(owner.clone()));
        }
        if !exported.history.is_empty() {
            map.insert(HISTORY.to_string(), history_json(&exported.history));
        }
    }
    let value = sorted(value);
    serde_json::to_writer(&mut *out, &value).expect("writing to a Vec cannot fail");
    out.push(b'\n');
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
