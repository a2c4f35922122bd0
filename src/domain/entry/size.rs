//! How big an entry is, and the one limit on it.
//!
//! An entry must fit both ways it is kept: as JSON (the embedded store, every response, pages bounded
//! in bytes) and as a DynamoDB item, which DynamoDB sizes by its own rules (AWS, "DynamoDB item sizes
//! and formats"): an attribute name counts its UTF-8 bytes; a string its UTF-8 bytes; a number one
//! byte per two significant digits plus one (see [`number_size`]); null and booleans one byte; a list
//! or map 3 bytes plus, per element, one byte (and a map its keys' bytes) plus the element. A list of
//! one-digit numbers thus takes 3 bytes per element in DynamoDB against 2 in JSON, so a JSON limit
//! alone lets an entry grow past DynamoDB's 400 KB item limit, and the write fails in the store.
//!
//! [`check`] holds both measures against their limits, with room reserved for the largest health
//! record ([`MAX_HEALTH_BYTES`]) so that nothing a probed registry answers can push an entry past
//! either limit or stop its owner from updating it. Both stores apply it, because both go through the
//! domain; past it an entry is a 400 with code `entry_too_large`.

use serde_json::{Map, Number, Value};

use super::HEALTH;
use crate::error::ValidationError;
use crate::health::limits::MAX_HEALTH_BYTES;

/// An entry as JSON, health record included, is at most this many bytes.
pub const MAX_ENTRY_BYTES: usize = 300 * 1024;
/// An entry as a DynamoDB item, health record included, is at most this many bytes by
/// [`item_size`]: 2.3% under DynamoDB's own limit of 400 KB (409,600 bytes), because AWS calls its
/// number sizing "approximately".
pub const MAX_ITEM_BYTES: usize = 400_000;
/// DynamoDB's item size limit.
pub const DYNAMODB_ITEM_LIMIT: usize = 400 * 1024;

/// Room kept for the health record as JSON: `,"container_registry_health":` and the record.
const HEALTH_RESERVE_JSON: usize = HEALTH.len() + 4 + MAX_HEALTH_BYTES;
/// Room kept for the health record as an attribute: its name and the record (whose DynamoDB size is
/// never more than its JSON size: see the tests).
const HEALTH_RESERVE_ITEM: usize = HEALTH.len() + MAX_HEALTH_BYTES;

/// The most the client's part of an entry (everything but the health record) may take as JSON.
pub const MAX_CLIENT_JSON_BYTES: usize = MAX_ENTRY_BYTES - HEALTH_RESERVE_JSON;
/// The most the client's part of an entry may take as a DynamoDB item.
pub const MAX_CLIENT_ITEM_BYTES: usize = MAX_ITEM_BYTES - HEALTH_RESERVE_ITEM;

/// The most JSON values (scalars, arrays and objects, at any depth) the client's part of an entry
/// may hold. A parsed value costs tens of bytes whatever its JSON size, so this bounds what reading
/// one entry costs in memory (about 1 MB), where the byte limits alone would allow 150,000 values.
pub const MAX_VALUES: usize = 10_000;

/// Checks an entry, given as its JSON object, against the limits. The health record in `doc`, if
/// any, is left out and its maximal size counted instead.
pub fn check(doc: &Map<String, Value>) -> Result<(), ValidationError> {
    let without_health = |k: &String| k != HEALTH;
    let values: usize = doc
        .iter()
        .filter(|(k, _)| without_health(k))
        .map(|(_, v)| count_values(v))
        .sum();
    if values > MAX_VALUES {
        return Err(ValidationError::too_large(format!(
            "holds {values} JSON values (every number, string, list and object counts, at any \
             depth); an entry may hold at most {MAX_VALUES}"
        )));
    }
    let json = json_size_of_object(doc, without_health);
    if json > MAX_CLIENT_JSON_BYTES {
        return Err(ValidationError::too_large(format!(
            "is {json} bytes as JSON; an entry may be at most {MAX_CLIENT_JSON_BYTES} bytes as JSON \
             ({MAX_ENTRY_BYTES} with {HEALTH_RESERVE_JSON} kept for its health record)"
        )));
    }
    let item: usize = doc
        .iter()
        .filter(|(k, _)| without_health(k))
        .map(|(k, v)| k.len() + value_size(v))
        .sum();
    if item > MAX_CLIENT_ITEM_BYTES {
        return Err(ValidationError::too_large(format!(
            "is {item} bytes as a DynamoDB item (which counts numbers, lists and maps differently \
             from JSON: a one-digit number in a list takes 3 bytes); an entry may be at most \
             {MAX_CLIENT_ITEM_BYTES} bytes as an item ({MAX_ITEM_BYTES} with {HEALTH_RESERVE_ITEM} \
             kept for its health record; DynamoDB's limit is {DYNAMODB_ITEM_LIMIT})"
        )));
    }
    Ok(())
}

/// `v` and every value inside it.
fn count_values(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count_values).sum(),
        Value::Object(map) => map.values().map(count_values).sum(),
        _ => 0,
    }
}

/// The bytes of `doc` serialized as JSON (as serde_json writes it, compactly), keeping the keys
/// `keep` accepts.
fn json_size_of_object(doc: &Map<String, Value>, keep: impl Fn(&String) -> bool) -> usize {
    let mut size = 2; // {}
    let mut first = true;
    for (k, v) in doc.iter().filter(|(k, _)| keep(k)) {
        if !first {
            size += 1; // ,
        }
        first = false;
        size += json_string_size(k) + 1 + json_size(v);
    }
    size
}

/// The bytes of `v` serialized as compact JSON, without serializing it.
pub fn json_size(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => json_string_size(s),
        Value::Array(items) => {
            2 + items.iter().map(json_size).sum::<usize>() + items.len().saturating_sub(1)
        }
        Value::Object(map) => json_size_of_object(map, |_| true),
    }
}

/// A string as serde_json writes it: quotes, and escapes for `"`, `\` and control characters.
fn json_string_size(s: &str) -> usize {
    2 + s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

/// The size DynamoDB gives a value (without the attribute name).
pub fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(n) => number_size(n),
        Value::String(s) => s.len(),
        Value::Array(items) => 3 + items.iter().map(|i| 1 + value_size(i)).sum::<usize>(),
        Value::Object(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
    }
}

/// The size DynamoDB gives the number as it is stored (serde_dynamo writes the same decimal
/// digits serde_json does): one byte of exponent and the significant digits in base 100, aligned on
/// even powers of ten, so `d` significant digits take `ceil(d/2)` bytes, or one more when `d` is even
/// and the first digit sits at an even power of ten (`1.2` is `01|20`); one more byte for a negative
/// number; zero is one byte. AWS gives the approximation "1 byte per two significant digits + 1";
/// this is the exact encoding, never less.
pub fn number_size(n: &Number) -> usize {
    let (digits, exponent, negative) = significant_digits(n);
    if digits == 0 {
        return 1;
    }
    let pairs = digits.div_ceil(2);
    let misaligned = digits % 2 == 0 && exponent.rem_euclid(2) == 0;
    1 + pairs + usize::from(misaligned) + usize::from(negative)
}

/// Significant digits (leading and trailing zeros trimmed), the power of ten of the first one, and
/// the sign, of a JSON number as it is written.
fn significant_digits(n: &Number) -> (usize, i64, bool) {
    // `{:e}` writes the shortest digits that read back as the same number: 1.5e0, 1e300, 123e0 ...
    let text = if let Some(i) = n.as_i64() {
        format!("{i:e}")
    } else if let Some(u) = n.as_u64() {
        format!("{u:e}")
    } else {
        format!("{:e}", n.as_f64().unwrap_or(0.0))
    };
    let negative = text.starts_with('-');
    let (mantissa, exponent) = text
        .trim_start_matches('-')
        .split_once('e')
        .unwrap_or((&text, "0"));
    let digits = mantissa.replace('.', "");
    let digits = digits.trim_start_matches('0').trim_end_matches('0');
    (digits.len(), exponent.parse().unwrap_or(0), negative)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{AuthChallenge, HealthStatus, ProbeResult};
    use serde_json::json;

    #[test]
    fn json_size_is_what_serde_json_writes() {
        for v in [
            json!(null),
            json!({"a": [1, -2.5, true, false, null, "x\"y\\z\n\u{1}é😀"], "": {}, "b": []}),
            json!([[], {}, [[1]], 1e300, -1e-130, 0, u64::MAX, i64::MIN]),
            json!("\u{7f}\u{1f}\t"),
        ] {
            assert_eq!(json_size(&v), serde_json::to_vec(&v).unwrap().len(), "{v}");
        }
    }

    #[test]
    fn numbers_are_sized_as_dynamodb_encodes_them() {
        for (n, size) in [
            (json!(0), 1),
            (json!(5), 2),
            (json!(-5), 3),
            (json!(12), 2),    // 12|
            (json!(1.2), 3),   // 01|20
            (json!(123), 3),   // 01|23
            (json!(1000), 2),  // trailing zeros trimmed
            (json!(1234), 3),  // 12|34
            (json!(0.5), 2),   // 50
            (json!(0.05), 2),  // 05
            (json!(12.5), 3),  // 12|50
            (json!(1e300), 2), // one significant digit
            (json!(-1.5e-100), 4),
            (json!(u64::MAX), 11), // 18446744073709551615: 20 digits, first at 10^19
            (json!(i64::MIN), 12), // 19 digits, negative
        ] {
            assert_eq!(
                number_size(n.as_number().unwrap()),
                size,
                "{n} has {:?}",
                significant_digits(n.as_number().unwrap())
            );
        }
    }

    #[test]
    fn lists_maps_and_names_count_as_aws_documents() {
        // {"a": [1, "xy", null, {"k": true}]}: name 1; list 3 + (1+2) + (1+2) + (1+1) + (1 + map 3 + 1 + 1 + 1)
        let doc = json!({"a": [1, "xy", null, {"k": true}]});
        let size: usize = doc
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| k.len() + value_size(v))
            .sum();
        assert_eq!(size, 1 + 3 + 3 + 3 + 2 + 7);
        assert_eq!(value_size(&json!([])), 3);
        assert_eq!(value_size(&json!({})), 3);
        assert_eq!(value_size(&json!("日本")), 6);
    }

    #[test]
    fn the_health_record_fits_its_reserve_both_ways() {
        let huge = |c: &str| c.repeat(100_000);
        let record = ProbeResult {
            url: huge("a"),
            reachable: true,
            status_code: Some(599),
            reason: Some(huge("\"")),
            status: HealthStatus::NotRegistry,
            latency_ms: Some(u64::MAX),
            api_version: Some(huge("é")),
            challenge: Some(AuthChallenge {
                scheme: huge("x"),
                realm: Some(huge("\\")),
                service: Some(huge("😀")),
                scope: Some(huge("s")),
            }),
            checked_at: "2026-11-29T16:04:00.000Z".into(),
            error: Some(huge("e")),
            refused_by: Some("cloud-metadata".into()),
            uptime_30d: Some(0.123_456_789_012_345_67),
        }
        .bounded();
        let value = serde_json::to_value(&record).unwrap();
        assert!(
            json_size(&value) <= MAX_HEALTH_BYTES,
            "{}",
            json_size(&value)
        );
        assert!(
            value_size(&value) <= MAX_HEALTH_BYTES,
            "{}",
            value_size(&value)
        );
        assert!(value_size(&value) <= json_size(&value));
    }
}
