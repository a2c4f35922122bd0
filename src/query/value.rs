//! Equality and ordering of JSON values as the query language defines them: numbers compare by
//! value across integer and float forms (1 equals 1.0, exactly, even beyond 2^53), strings by
//! code point, booleans false < true; values of different kinds are never equal and never
//! ordered. Objects are equal when they have the same keys with equal values, in any order (a
//! documented difference from MongoDB, which compares key order too).
//!
//! Recursion here is bounded by the depth of the *second* operand, which is always a value from a
//! filter or an update (bounded by the limits), never by the depth of a stored document alone.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

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

/// Lists up to this long are searched in order; longer ones through a hash index.
const LINEAR_MAX: usize = 8;

/// The values of an `$in`, `$nin` or `$all`, as written (it derefs to the list, which the
/// DynamoDB translation and the tag plan read) and grouped into classes of equal values
/// ([`values_equal`] is an equivalence: `1`, `1.0` and `1e0` are one class), so that "which class
/// does this value fall in" costs one hash lookup however long the list: a list of 1,000 values
/// is not compared 1,000 times with every value an entry holds.
#[derive(Clone)]
pub struct ValueSet {
    values: Vec<Value>,
    /// The index in `values` of the first value of each class.
    reps: Vec<usize>,
    /// The class of `null`, which a missing field matches too.
    null_class: Option<usize>,
    /// Classes by [`canonical_hash`], for lists longer than [`LINEAR_MAX`]. Randomly seeded:
    /// values chosen to collide would have to guess the seed (and the work budget counts every
    /// comparison a collision costs anyway).
    index: Option<(foldhash::fast::RandomState, HashMap<u64, Vec<usize>>)>,
}

impl ValueSet {
    pub fn new(values: Vec<Value>) -> ValueSet {
        let mut set = ValueSet {
            values,
            reps: Vec::new(),
            null_class: None,
            index: None,
        };
        if set.values.len() > LINEAR_MAX {
            let state = foldhash::fast::RandomState::default();
            let mut map: HashMap<u64, Vec<usize>> = HashMap::with_capacity(set.values.len());
            for (i, v) in set.values.iter().enumerate() {
                let bucket = map.entry(canonical_hash(&state, v)).or_default();
                if !bucket
                    .iter()
                    .any(|&c| values_equal(v, &set.values[set.reps[c]]))
                {
                    bucket.push(set.reps.len());
                    set.reps.push(i);
                }
            }
            set.index = Some((state, map));
        } else {
            for (i, v) in set.values.iter().enumerate() {
                if !set.reps.iter().any(|&r| values_equal(v, &set.values[r])) {
                    set.reps.push(i);
                }
            }
        }
        set.null_class = set.reps.iter().position(|&r| set.values[r].is_null());
        set
    }

    /// How many distinct values the list holds.
    pub fn classes(&self) -> usize {
        self.reps.len()
    }

    /// The class `v` (`None`: missing) is equal to, if any; `compared` is told how many value
    /// comparisons that took (for the work budget).
    pub(crate) fn class_of(&self, v: Option<&Value>, compared: &mut u64) -> Option<usize> {
        let Some(v) = v else {
            return self.null_class;
        };
        match &self.index {
            None => {
                let found = self
                    .reps
                    .iter()
                    .position(|&r| values_equal(v, &self.values[r]));
                *compared += found.map_or(self.reps.len(), |c| c + 1) as u64;
                found
            }
            Some((state, map)) => {
                *compared += 1;
                let bucket = map.get(&canonical_hash(state, v))?;
                *compared += bucket.len() as u64;
                bucket
                    .iter()
                    .copied()
                    .find(|&c| values_equal(v, &self.values[self.reps[c]]))
            }
        }
    }
}

impl std::ops::Deref for ValueSet {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.values
    }
}

impl PartialEq for ValueSet {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl std::fmt::Debug for ValueSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.values.fmt(f)
    }
}

/// Deepest level [`canonical_hash`] reads: no filter value nests deeper (`MAX_FILTER_DEPTH`),
/// so two equal values hash alike, and a deeper stored value costs no deeper recursion.
const HASH_DEPTH: usize = super::limits::MAX_FILTER_DEPTH;

/// A hash under which values [`values_equal`] calls equal hash alike: a number by its value (an
/// integral float as the integer), an object by its entries in any order.
pub(crate) fn canonical_hash(state: &foldhash::fast::RandomState, v: &Value) -> u64 {
    let mut h = state.build_hasher();
    hash_into(state, v, &mut h, HASH_DEPTH);
    h.finish()
}

fn hash_into(state: &foldhash::fast::RandomState, v: &Value, h: &mut impl Hasher, depth: usize) {
    if depth == 0 {
        h.write_u8(7);
        return;
    }
    match v {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => {
            h.write_u8(1);
            h.write_u8(*b as u8);
        }
        Value::Number(n) => match num(n) {
            Num::Int(i) => {
                h.write_u8(2);
                h.write_i128(i);
            }
            Num::Float(f) => {
                // Below 2^127 an integral float equals that integer exactly (`cmp_int_float`);
                // `as` maps -0.0 to 0 as well.
                if f.fract() == 0.0 && f.abs() < 1.7014118346046923e38 {
                    h.write_u8(2);
                    h.write_i128(f as i128);
                } else {
                    h.write_u8(3);
                    h.write_u64(f.to_bits());
                }
            }
        },
        Value::String(s) => {
            h.write_u8(4);
            s.hash(h);
        }
        Value::Array(items) => {
            h.write_u8(5);
            h.write_usize(items.len());
            for item in items {
                hash_into(state, item, h, depth - 1);
            }
        }
        Value::Object(map) => {
            h.write_u8(6);
            h.write_usize(map.len());
            // Key order does not matter for equality: a sum of the entries' own hashes.
            let sum = map.iter().fold(0u64, |sum, (k, v)| {
                let mut e = state.build_hasher();
                k.hash(&mut e);
                hash_into(state, v, &mut e, depth - 1);
                sum.wrapping_add(e.finish())
            });
            h.write_u64(sum);
        }
    }
}

#[cfg(test)]
mod set_tests {
    use super::*;
    use serde_json::json;

    fn values(v: Value) -> Vec<Value> {
        v.as_array().unwrap().clone()
    }

    #[test]
    fn equal_values_hash_alike_and_fall_in_one_class() {
        let state = foldhash::fast::RandomState::default();
        for (a, b) in [
            (json!(1), json!(1.0)),
            (json!(-0.0), json!(0)),
            (json!(9007199254740993u64), json!(9007199254740993i64)),
            (json!(1e20), json!(100000000000000000000.0)),
            (json!({"a": 1, "b": [2.0]}), json!({"b": [2], "a": 1.0})),
        ] {
            assert!(values_equal(&a, &b), "{a} {b}");
            assert_eq!(
                canonical_hash(&state, &a),
                canonical_hash(&state, &b),
                "{a} {b}"
            );
        }
        // Long lists (hashed) and short ones (searched) give the same classes.
        for list in [
            json!([1, 1.0, "1", null, true, [1], {"a": 1}]),
            json!([1, 1.0, "1", null, true, [1], {"a": 1}, 2, 3, 4, 5, 6, 2.0, 9007199254740993u64, 9007199254740992.0]),
        ] {
            let set = ValueSet::new(values(list.clone()));
            let mut n = 0;
            assert_eq!(set.classes(), if set.len() > LINEAR_MAX { 13 } else { 6 });
            for v in set.iter() {
                let c = set.class_of(Some(v), &mut n).unwrap();
                assert!(values_equal(v, &set[set.reps[c]]));
            }
            assert_eq!(
                set.class_of(None, &mut n),
                set.class_of(Some(&Value::Null), &mut n)
            );
            assert_eq!(set.class_of(Some(&json!(1.5)), &mut n), None);
            assert_eq!(
                set.class_of(Some(&json!({"a": 1.0})), &mut n),
                set.class_of(Some(&json!({"a": 1})), &mut n)
            );
        }
        // 2^53 + 1 as an integer is not the float 2^53.
        let set = ValueSet::new(values(json!([
            9007199254740992.0,
            0,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8
        ])));
        assert_eq!(
            set.class_of(Some(&json!(9007199254740993u64)), &mut 0),
            None
        );
        assert_eq!(
            set.class_of(Some(&json!(9007199254740992u64)), &mut 0),
            Some(0)
        );
    }
}
