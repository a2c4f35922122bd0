//! Parsing only what a filter looks at. A filter reads a stored entry through its paths, and every
//! path starts at one top-level field, so an entry parsed with only those fields (the rest skipped
//! without being built) gives every filter the same answer as the whole entry. Skipping is most of
//! the cost of an unindexed query: an entry's config, storage info and health are parsed and
//! dropped otherwise.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::filter::{FieldFilter, Filter};

/// The top-level fields a filter reads. `{}` reads none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(BTreeSet<String>);

impl Fields {
    /// The first segment of every path in `filter`. The paths inside an `$elemMatch` are relative to
    /// an element of the array its own path reaches, which is already included.
    pub fn of(filter: &Filter) -> Fields {
        fn walk(f: &Filter, out: &mut BTreeSet<String>) {
            match f {
                Filter::And(fs) | Filter::Or(fs) | Filter::Nor(fs) => {
                    fs.iter().for_each(|f| walk(f, out));
                }
                Filter::Field(FieldFilter { path, .. }) => {
                    if let Some(first) = path.segments().first()
                        && !out.contains(first)
                    {
                        out.insert(first.clone());
                    }
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(filter, &mut out);
        Fields(out)
    }

    /// Whether the filter reads the top-level field `field`.
    pub fn contains(&self, field: &str) -> bool {
        self.0.contains(field)
    }

    /// Parses the JSON object `json` keeping only these fields. Fails as a whole parse would on
    /// text that is not JSON, or not an object.
    pub fn parse(&self, json: &[u8]) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let map = ProjectSeed(&self.0).deserialize(&mut de)?;
        de.end()?;
        Ok(Value::Object(map))
    }
}

struct ProjectSeed<'a>(&'a BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for ProjectSeed<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ProjectSeed<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            match key {
                Some(key) => {
                    let value: Value = map.next_value()?;
                    out.insert(key, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A key: `Some` (owned) when it is kept, `None` (nothing allocated) when it is skipped.
struct KeySeed<'a>(&'a BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.contains(key).then(|| key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn filter(v: Value) -> Filter {
        Filter::parse(&v).unwrap()
    }

    #[test]
    fn keeps_exactly_the_fields_the_filter_reads() {
        let f = filter(json!({
            "$or": [{"a.b": 1}, {"c": {"$elemMatch": {"d": 2}}}],
            "$nor": [{"e": {"$exists": true}}],
        }));
        let doc = json!({"a": {"b": 1, "x": [1, 2]}, "c": [{"d": 2}], "e": null, "f": {"g": "h"}, "z": 9});
        let projected = Fields::of(&f).parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            projected,
            json!({"a": {"b": 1, "x": [1, 2]}, "c": [{"d": 2}], "e": null})
        );
        assert_eq!(
            Fields::of(&filter(json!({}))).parse(b"{\"a\": 1}").unwrap(),
            json!({})
        );
    }

    #[test]
    fn refuses_what_a_whole_parse_refuses() {
        let fields = Fields::of(&filter(json!({"a": 1})));
        for bad in [
            &b"[1]"[..],
            b"{\"a\": 1",
            b"{\"b\": [}",
            b"{\"a\": 1} x",
            b"nope",
        ] {
            assert!(
                fields.parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Escaped keys are compared unescaped.
        assert_eq!(fields.parse(br#"{"\u0061": 2}"#).unwrap(), json!({"a": 2}));
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            "[ab]{0,2}".prop_map(Value::from),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[abc]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn cond() -> impl Strategy<Value = Value> {
        prop_oneof![
            leaf(),
            leaf().prop_map(|v| json!({"$ne": v})),
            leaf().prop_map(|v| json!({"$gt": v})),
            prop::collection::vec(leaf(), 0..3).prop_map(|v| json!({"$in": v})),
            prop::collection::vec(leaf(), 0..3).prop_map(|v| json!({"$nin": v})),
            any::<bool>().prop_map(|b| json!({"$exists": b})),
            (0u64..3).prop_map(|n| json!({"$size": n})),
            leaf().prop_map(|v| json!({"$elemMatch": {"a": v}})),
            leaf().prop_map(|v| json!({"$not": {"$eq": v}})),
        ]
    }

    fn field_filter() -> impl Strategy<Value = Value> {
        ("[abc](\\.[abc01])?", cond()).prop_map(|(p, c)| json!({ p: c }))
    }

    fn any_filter() -> impl Strategy<Value = Value> {
        field_filter().prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$and": v})),
                prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$or": v})),
                prop::collection::vec(inner, 1..3).prop_map(|v| json!({"$nor": v})),
            ]
        })
    }

    proptest! {
        /// The point of the projection: no filter can tell it from the whole document.
        #[test]
        fn a_projected_document_matches_exactly_when_the_whole_one_does(
            f in any_filter(),
            doc in prop::collection::btree_map("[abcd]", value(), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ) {
            let f = filter(f);
            let projected = Fields::of(&f).parse(doc.to_string().as_bytes()).unwrap();
            prop_assert_eq!(f.matches(&projected), f.matches(&doc));
        }
    }
}
