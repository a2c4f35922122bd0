//! The property that makes the query language trustworthy: for random entries (missing fields,
//! nulls, numbers, nested objects, lists of objects) and random filters from the whole grammar, the
//! reference evaluator, the embedded store and DynamoDB (dynalite, with the filter pushed down, or
//! read through the tag index) return the same set of entries, with pagination on. Tag conditions
//! are generated often, so indexed plans (and the index's merge of unions and intersections) are
//! checked as thoroughly as scans.

use crate::support;

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use registry_db::domain::catalog::Catalog;
use registry_db::domain::entry::ContainerRegistry;
use registry_db::query::Filter;
use registry_db::store::Store;
use serde_json::{Map, Value, json};

/// Scalars from a small domain, so that filters often match.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..4).prop_map(|n| json!(n)),
        prop_oneof![Just(1.0f64), Just(2.5), Just(-0.5)].prop_map(|f| json!(f)),
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("ai"),
            Just("A"),
            Just("ab"),
            Just("")
        ]
        .prop_map(|s| json!(s)),
    ]
}

fn small_object() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(prop_oneof![Just("x"), Just("y"), Just("0")], scalar(), 0..3)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn meta_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        1 => proptest::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        1 => small_object(),
        1 => proptest::collection::vec(small_object(), 0..3).prop_map(Value::Array),
        1 => proptest::collection::vec(proptest::collection::vec(scalar(), 0..2).prop_map(Value::Array), 0..2).prop_map(Value::Array),
    ]
}

/// Metadata keys, including ones that are DynamoDB reserved words or hold odd characters.
const META_KEYS: [&str; 6] = ["a", "b", "size", "my-key", "sp ace", "#h:c"];

fn entry_strategy() -> impl Strategy<Value = Value> {
    (
        proptest::collection::btree_map(
            proptest::sample::select(&META_KEYS[..]),
            meta_value(),
            0..4,
        ),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![Just("ai"), Just("gpu"), Just("a"), Just("b")],
            0..4,
        )),
        proptest::option::of((-1i64..3, prop_oneof![Just("s3"), Just("fs")])),
        prop_oneof![Just("alpha"), Just("beta"), Just("ai-lab")],
    )
        .prop_map(|(meta, tags, storage, name)| {
            let mut e = Map::new();
            e.insert("container_registry_name".into(), json!(name));
            e.insert(
                "container_registry_public_url".into(),
                json!("http://10.0.0.1:5000"),
            );
            e.insert(
                "container_registry_metadata".into(),
                Value::Object(meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            );
            if let Some(tags) = tags {
                e.insert("container_registry_tags".into(), json!(tags));
            }
            if let Some((size, kind)) = storage {
                e.insert(
                    "container_registry_storage_info".into(),
                    json!({"storage_size": size, "storage_type": kind}),
                );
            }
            Value::Object(e)
        })
}

fn path() -> impl Strategy<Value = String> {
    let meta = proptest::sample::select(&META_KEYS[..]);
    prop_oneof![
        Just("container_registry_name".to_string()),
        Just("container_registry_tags".to_string()),
        Just("container_registry_tags.0".to_string()),
        Just("container_registry_storage_info.storage_size".to_string()),
        Just("container_registry_storage_info.storage_type".to_string()),
        Just("container_registry_missing".to_string()),
        meta.clone()
            .prop_map(|k| format!("container_registry_metadata.{k}")),
        (
            meta.clone(),
            prop_oneof![Just("x"), Just("y"), Just("0"), Just("1")]
        )
            .prop_map(|(k, s)| format!("container_registry_metadata.{k}.{s}")),
        (meta, prop_oneof![Just("0.x"), Just("1.y"), Just("0.0")])
            .prop_map(|(k, s)| format!("container_registry_metadata.{k}.{s}")),
    ]
}

fn operator_expr() -> impl Strategy<Value = Value> {
    let scalars = proptest::collection::vec(scalar(), 0..4).prop_map(Value::Array);
    let comparison = (
        prop_oneof![
            Just("$eq"),
            Just("$ne"),
            Just("$gt"),
            Just("$gte"),
            Just("$lt"),
            Just("$lte")
        ],
        scalar(),
    )
        .prop_map(|(op, v)| json!({ op: v }));
    let leaf = prop_oneof![
        4 => comparison,
        2 => (prop_oneof![Just("$in"), Just("$nin")], scalars).prop_map(|(op, v)| json!({ op: v })),
        1 => any::<bool>().prop_map(|b| json!({"$exists": b})),
        1 => (0i64..4).prop_map(|n| json!({"$size": n})),
        1 => proptest::collection::vec(scalar(), 1..3).prop_map(|v| json!({"$all": v})),
        1 => (prop_oneof![Just("^a"), Just("b$"), Just("^ai"), Just("A"), Just("^$")], any::<bool>())
            .prop_map(|(re, i)| if i { json!({"$regex": re, "$options": "i"}) } else { json!({"$regex": re}) }),
        1 => (scalar(), scalar()).prop_map(|(lo, hi)| json!({"$gte": lo, "$lte": hi})),
        1 => small_object().prop_map(|o| json!({"$elemMatch": o.as_object().unwrap().iter().map(|(k, v)| (k.clone(), json!({"$eq": v}))).collect::<Map<_, _>>()})),
    ];
    prop_oneof![
        6 => leaf.clone(),
        1 => leaf.prop_map(|l| json!({"$not": l})),
    ]
}

/// Tag conditions the tag index answers ($eq, $in, $all of tag strings), so that indexed plans,
/// alone and inside $and/$or with anything else, are a large share of the cases.
fn tag_filter() -> impl Strategy<Value = Value> {
    let tag = prop_oneof![Just("ai"), Just("gpu"), Just("a"), Just("b"), Just("zz")];
    let tags = proptest::collection::vec(tag.clone(), 1..4);
    prop_oneof![
        tag.clone()
            .prop_map(|t| json!({"container_registry_tags": t})),
        tag.prop_map(|t| json!({"container_registry_tags": {"$eq": t}})),
        tags.clone()
            .prop_map(|ts| json!({"container_registry_tags": {"$in": ts}})),
        tags.prop_map(|ts| json!({"container_registry_tags": {"$all": ts}})),
    ]
}

fn filter_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        2 => (path(), operator_expr()).prop_map(|(p, e)| json!({ p: e })),
        1 => (path(), meta_value()).prop_map(|(p, v)| json!({ p: v })),
        2 => tag_filter(),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (
                prop_oneof![Just("$and"), Just("$or"), Just("$nor")],
                proptest::collection::vec(inner.clone(), 1..4)
            )
                .prop_map(|(op, fs)| json!({ op: fs })),
            proptest::collection::vec(inner, 2..3).prop_map(|fs| {
                // Implicit AND of top-level entries (when the keys differ).
                let mut m = Map::new();
                for f in fs {
                    for (k, v) in f.as_object().unwrap() {
                        m.insert(k.clone(), v.clone());
                    }
                }
                Value::Object(m)
            }),
        ]
    })
}

async fn all_pages(registry: &Catalog, filter: &Filter, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = registry
            .query(filter, limit, cursor.as_deref())
            .await
            .expect("query");
        ids.extend(page.entries.iter().map(|e| e.id.to_string()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
}

#[test]
fn evaluator_embedded_and_dynamodb_agree_on_random_filters_with_paging() {
    // Unoptimized builds of proptest's recursive strategies, driven from inside a nested runner,
    // need more than the 2 MiB a test thread gets; give the property its own thread.
    std::thread::Builder::new()
        .stack_size(32 * 1024 * 1024)
        .spawn(check_agreement)
        .unwrap()
        .join()
        .unwrap();
}

fn check_agreement() {
    let datasets: u32 = std::env::var("QUERY_PROPTEST_DATASETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let filters_per_dataset: u32 = std::env::var("QUERY_PROPTEST_FILTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut data_runner = TestRunner::new(Config {
        cases: datasets,
        failure_persistence: None,
        ..Config::default()
    });
    let entries = proptest::collection::vec(entry_strategy(), 1..40);
    let checked = std::cell::Cell::new(0u64);
    data_runner
        .run(&entries, |docs| {
            let (embedded, _dir) = support::embedded_store();
            let dynamo = rt.block_on(support::dynamo_store());
            let mut all: Vec<ContainerRegistry> = Vec::new();
            for (i, mut doc) in docs.into_iter().enumerate() {
                doc["container_registry_id"] = json!(format!("e{i:03}"));
                let entry = ContainerRegistry::from_create(doc).expect("generated entries are valid");
                rt.block_on(embedded.insert(&entry)).unwrap();
                rt.block_on(dynamo.insert(&entry)).unwrap();
                all.push(entry);
            }
            let stores: [(&str, Arc<dyn Store>); 2] = [("embedded", embedded), ("dynamodb", dynamo)];
            let registries: Vec<(&str, Catalog)> =
                stores.into_iter().map(|(n, s)| (n, Catalog::new(s, support::loopback_prober(100)))).collect();
            let mut filter_runner =
                TestRunner::new(Config { cases: filters_per_dataset, failure_persistence: None, ..Config::default() });
            filter_runner
                .run(&(filter_strategy(), 1usize..6), |(filter_json, limit)| {
                    let filter = match Filter::parse(&filter_json) {
                        Ok(f) => f,
                        // A generated filter may be invalid (e.g. $regex on a bad combination); a 400 is consistent everywhere.
                        Err(_) => return Ok(()),
                    };
                    let expected: BTreeSet<String> = all
                        .iter()
                        .filter(|e| filter.matches(&Value::Object(e.to_json())))
                        .map(|e| e.container_registry_id.clone())
                        .collect();
                    for (name, registry) in &registries {
                        let got = rt.block_on(all_pages(registry, &filter, limit));
                        let unique: BTreeSet<String> = got.iter().cloned().collect();
                        if unique.len() != got.len() {
                            return Err(TestCaseError::fail(format!("{name}: an entry repeated across pages for {filter_json}")));
                        }
                        if unique != expected {
                            return Err(TestCaseError::fail(format!(
                                "{name} disagrees with the evaluator for {filter_json} (limit {limit}):\n  store: {unique:?}\n  evaluator: {expected:?}"
                            )));
                        }
                    }
                    Ok(())
                })
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            checked.set(checked.get() + u64::from(filters_per_dataset));
            Ok(())
        })
        .unwrap();
    assert_eq!(checked.get(), u64::from(datasets * filters_per_dataset));
}
