//! Equality and ordering of JSON values as the query language defines them: numbers compare by
//! value across integer and float forms (1 equals 1.0, exactly, even beyond 2^53), strings by
//! code point, booleans false < true; values of different kinds are never equal and never
//! ordered. Objects are equal when they have the same keys with equal values, in any order (a
//! documented difference from MongoDB, which compares key order too).
//!
//! Recursion here is bounded by the depth of the *second* operand, which is always a value from a
//! filter or an update (bounded by the limits), never by the depth of a stored document alone.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Query-language equality (see the module documentation).
pub fn values_equal(doc: &Value, query: &Value) -> bool {
    match (doc, query) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => cmp_numbers(a, b) == Ordering::Equal,
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && b.iter()
                    .all(|(k, bv)| a.get(k).is_some_and(|av| values_equal(av, bv)))
        }
        _ => false,
    }
}

/// Ordering for `$gt`, `$gte`, `$lt`, `$lte`: `None` when the kinds differ (or for arrays and
/// objects, which this language does not order).
pub fn compare_values(doc: &Value, query: &Value) -> Option<Ordering> {
    match (doc, query) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::Number(b)) => Some(cmp_numbers(a, b)),
        // Rust compares `str` by UTF-8 bytes, which is code point order.
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &Number) -> Num {
    if let Some(u) = n.as_u64() {
        Num::Int(u as i128)
    } else if let Some(i) = n.as_i64() {
        Num::Int(i as i128)
    } else {
        // serde_json never holds NaN or infinities.
        Num::Float(n.as_f64().unwrap_or(0.0))
    }
}

/// Exact comparison of two JSON numbers, whatever their representation.
pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    match (num(a), num(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // Every i64/u64 lies strictly within ±2^127, so beyond that the float wins outright.
    const LIMIT: f64 = 1.7014118346046923e38; // 2^127
    if f >= LIMIT {
        return Ordering::Less;
    }
    if f <= -LIMIT {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // `t` is an integer of magnitude below 2^127, so the cast is exact.
    match i.cmp(&(t as i128)) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}
