//! The semantics of `shared/QUERY.md`, table-driven, through the public API. Each case is a
//! filter, a handful of documents and the indexes MongoDB's documented behaviour says match.
//! Then the updates, the errors (each naming its construct), and a proptest of the parsers over
//! arbitrary and very deep JSON: no panic, no stack overflow, bounded time.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use registry_db::query::{Filter, QueryError, Update};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    filter: Value,
    docs: Vec<Value>,
    expect: Vec<usize>,
}

fn case(name: &'static str, filter: Value, docs: Vec<Value>, expect: &[usize]) -> Case {
    Case {
        name,
        filter,
        docs,
        expect: expect.to_vec(),
    }
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let f = match Filter::parse(&c.filter) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{}: {} did not parse: {e}", c.name, c.filter));
                continue;
            }
        };
        let got: Vec<usize> = c
            .docs
            .iter()
            .enumerate()
            .filter(|(_, d)| f.matches(d))
            .map(|(i, _)| i)
            .collect();
        if got != c.expect {
            failures.push(format!(
                "{}: {} matched {:?}, expected {:?}",
                c.name, c.filter, got, c.expect
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn missing_fields_and_null() {
    run(vec![
        case(
            "null matches missing, null, and arrays holding null",
            json!({"f": null}),
            vec![
                json!({}),
                json!({"f": null}),
                json!({"f": 0}),
                json!({"f": [null]}),
                json!({"f": []}),
                json!({"f": [1]}),
            ],
            &[0, 1, 3],
        ),
        case(
            "$eq null is the same",
            json!({"f": {"$eq": null}}),
            vec![
                json!({}),
                json!({"f": null}),
                json!({"f": false}),
                json!({"f": ""}),
            ],
            &[0, 1],
        ),
        case(
            "$ne matches a document without the field",
            json!({"f": {"$ne": 1}}),
            vec![
                json!({}),
                json!({"f": 1}),
                json!({"f": 2}),
                json!({"f": [1, 2]}),
                json!({"f": [2]}),
                json!({"f": null}),
                json!({"f": 1.0}),
            ],
            &[0, 2, 4, 5],
        ),
        case(
            "$nin matches a document without the field",
            json!({"f": {"$nin": [1, 2]}}),
            vec![
                json!({}),
                json!({"f": 1}),
                json!({"f": 3}),
                json!({"f": [3, 1]}),
                json!({"f": [3]}),
            ],
            &[0, 2, 4],
        ),
        case(
            "$nin with null excludes missing fields",
            json!({"f": {"$nin": [null]}}),
            vec![json!({}), json!({"f": null}), json!({"f": 1})],
            &[2],
        ),
        case(
            "$exists false matches only a missing field (a null is present)",
            json!({"f": {"$exists": false}}),
            vec![json!({}), json!({"f": null}), json!({"g": 1})],
            &[0, 2],
        ),
        case(
            "$exists true",
            json!({"f": {"$exists": true}}),
            vec![
                json!({}),
                json!({"f": null}),
                json!({"f": false}),
                json!({"f": []}),
            ],
            &[1, 2, 3],
        ),
        case(
            "$exists accepts 1 and 0 as MongoDB does",
            json!({"f": {"$exists": 0}}),
            vec![json!({}), json!({"f": 1})],
            &[0],
        ),
        case(
            "$ne null: present and not null, arrays without null",
            json!({"f": {"$ne": null}}),
            vec![
                json!({}),
                json!({"f": null}),
                json!({"f": 1}),
                json!({"f": [null]}),
                json!({"f": []}),
            ],
            &[2, 4],
        ),
        case(
            "$gte null behaves as equality to null",
            json!({"f": {"$gte": null}}),
            vec![json!({}), json!({"f": null}), json!({"f": 1})],
            &[0, 1],
        ),
        case(
            "$gt null matches nothing",
            json!({"f": {"$gt": null}}),
            vec![json!({}), json!({"f": null}), json!({"f": 1})],
            &[],
        ),
        case(
            "$in with null matches missing",
            json!({"f": {"$in": [null, 5]}}),
            vec![json!({}), json!({"f": 5}), json!({"f": 4})],
            &[0, 1],
        ),
        case(
            "$in with an empty list matches nothing",
            json!({"f": {"$in": []}}),
            vec![json!({}), json!({"f": 5})],
            &[],
        ),
        case(
            "$nin with an empty list matches everything",
            json!({"f": {"$nin": []}}),
            vec![json!({}), json!({"f": 5})],
            &[0, 1],
        ),
    ]);
}

#[test]
fn arrays() {
    let tags = |t: Value| json!({"container_registry_tags": t});
    run(vec![
        case(
            "equality matches an element or the whole array",
            json!({"container_registry_tags": "ai"}),
            vec![
                tags(json!(["ai", "ml"])),
                tags(json!(["ml"])),
                tags(json!("ai")),
                tags(json!([["ai"]])),
                json!({}),
            ],
            &[0, 2],
        ),
        case(
            "array equality is exact and ordered, or an element equal to the array",
            json!({"container_registry_tags": ["ai", "ml"]}),
            vec![
                tags(json!(["ai", "ml"])),
                tags(json!(["ml", "ai"])),
                tags(json!([["ai", "ml"], "x"])),
                tags(json!(["ai", "ml", "x"])),
            ],
            &[0, 2],
        ),
        case(
            "$in matches if any element is listed",
            json!({"container_registry_tags": {"$in": ["ai", "x"]}}),
            vec![
                tags(json!(["ai", "ml"])),
                tags(json!(["ml"])),
                tags(json!("x")),
                tags(json!([])),
            ],
            &[0, 2],
        ),
        case(
            "$in matches the array itself too",
            json!({"container_registry_tags": {"$in": [["ml"]]}}),
            vec![
                tags(json!(["ml"])),
                tags(json!([["ml"], 1])),
                tags(json!("ml")),
            ],
            &[0, 1],
        ),
        case(
            "$gt matches if any element is greater",
            json!({"n": {"$gt": 5}}),
            vec![
                json!({"n": [1, 10]}),
                json!({"n": [1, 2]}),
                json!({"n": 6}),
                json!({"n": "6"}),
                json!({}),
            ],
            &[0, 2],
        ),
        case(
            "two range operators may be satisfied by different elements",
            json!({"n": {"$gt": 5, "$lt": 8}}),
            vec![
                json!({"n": [1, 10]}),
                json!({"n": [6]}),
                json!({"n": 7}),
                json!({"n": [9, 10]}),
            ],
            &[0, 1, 2],
        ),
        case(
            "$elemMatch needs one element to satisfy all",
            json!({"n": {"$elemMatch": {"$gt": 5, "$lt": 8}}}),
            vec![
                json!({"n": [1, 10]}),
                json!({"n": [6]}),
                json!({"n": 7}),
                json!({}),
            ],
            &[1],
        ),
        case(
            "$ne excludes every entry whose tags contain the value",
            json!({"container_registry_tags": {"$ne": "ai"}}),
            vec![
                tags(json!(["ai", "ml"])),
                tags(json!(["ml"])),
                json!({}),
                tags(json!("ai")),
            ],
            &[1, 2],
        ),
        case(
            "$nin excludes arrays with a listed element",
            json!({"container_registry_tags": {"$nin": ["ai", "gpu"]}}),
            vec![
                tags(json!(["ai"])),
                tags(json!(["gpu", "x"])),
                tags(json!(["x"])),
            ],
            &[2],
        ),
        case(
            "$all: every listed value is an element",
            json!({"container_registry_tags": {"$all": ["ai", "ml"]}}),
            vec![
                tags(json!(["ai", "ml", "x"])),
                tags(json!(["ai"])),
                tags(json!("ai")),
                tags(json!(["ml", "ai"])),
            ],
            &[0, 3],
        ),
        case(
            "$all with one value is equality",
            json!({"container_registry_tags": {"$all": ["ai"]}}),
            vec![tags(json!("ai")), tags(json!(["ai"])), tags(json!(["x"]))],
            &[0, 1],
        ),
        case(
            "$all with no values matches nothing",
            json!({"t": {"$all": []}}),
            vec![json!({"t": []}), json!({})],
            &[],
        ),
        case(
            "$size matches arrays of that length only",
            json!({"container_registry_tags": {"$size": 2}}),
            vec![
                tags(json!(["a", "b"])),
                tags(json!(["a"])),
                tags(json!("ab")),
                json!({}),
                tags(json!([["a", "b"]])),
            ],
            &[0],
        ),
        case(
            "$size 0",
            json!({"t": {"$size": 0}}),
            vec![
                json!({"t": []}),
                json!({}),
                json!({"t": null}),
                json!({"t": {}}),
            ],
            &[0],
        ),
        case(
            "$size accepts a whole float",
            json!({"t": {"$size": 1.0}}),
            vec![json!({"t": [1]})],
            &[0],
        ),
        case(
            "nested arrays are not flattened",
            json!({"a": 1}),
            vec![json!({"a": [[1]]}), json!({"a": [1]})],
            &[1],
        ),
    ]);
}

#[test]
fn types_and_ordering() {
    run(vec![
        case(
            "1 equals 1.0",
            json!({"n": 1}),
            vec![
                json!({"n": 1.0}),
                json!({"n": "1"}),
                json!({"n": true}),
                json!({"n": 1}),
            ],
            &[0, 3],
        ),
        case(
            "1.0 equals 1",
            json!({"n": 1.0}),
            vec![json!({"n": 1})],
            &[0],
        ),
        case(
            "a string bound never matches a number",
            json!({"n": {"$gt": "5"}}),
            vec![json!({"n": 6}), json!({"n": "6"}), json!({"n": "10"})],
            &[1],
        ),
        case(
            "booleans order false < true",
            json!({"b": {"$lt": true}}),
            vec![json!({"b": false}), json!({"b": 0}), json!({"b": true})],
            &[0],
        ),
        case(
            "objects are equal whatever the key order",
            json!({"o": {"a": 1, "b": 2}}),
            vec![
                json!({"o": {"b": 2, "a": 1}}),
                json!({"o": {"a": 1}}),
                json!({"o": {"a": 1, "b": 2, "c": 3}}),
            ],
            &[0],
        ),
        case(
            "strings order by code point",
            json!({"s": {"$lt": "é"}}),
            vec![
                json!({"s": "z"}),
                json!({"s": "\u{10000}"}),
                json!({"s": "é"}),
            ],
            &[0],
        ),
        case(
            "integers beyond 2^53 compare exactly",
            json!({"n": 9007199254740993u64}),
            vec![
                json!({"n": 9007199254740992.0}),
                json!({"n": 9007199254740993u64}),
            ],
            &[1],
        ),
        case(
            "$lte on numbers",
            json!({"n": {"$lte": 2.5}}),
            vec![
                json!({"n": 2}),
                json!({"n": 2.5}),
                json!({"n": 3}),
                json!({"n": -1}),
            ],
            &[0, 1, 3],
        ),
        case(
            "$gte on strings",
            json!({"s": {"$gte": "b"}}),
            vec![
                json!({"s": "a"}),
                json!({"s": "b"}),
                json!({"s": "ba"}),
                json!({"s": 1}),
            ],
            &[1, 2],
        ),
        case(
            "empty filter matches everything",
            json!({}),
            vec![json!({}), json!({"a": 1})],
            &[0, 1],
        ),
    ]);
}

#[test]
fn paths_through_objects_and_arrays() {
    let owners = |o: Value| json!({"container_registry_metadata": {"owners": o}});
    run(vec![
        case(
            "implicit traversal of a list of objects",
            json!({"container_registry_metadata.owners.name": "ana"}),
            vec![
                owners(json!([{"name": "ana"}, {"name": "bo"}])),
                owners(json!([{"name": "bo"}])),
                owners(json!({"name": "ana"})),
                owners(json!([[{"name": "ana"}]])),
                owners(json!([{"name": ["x", "ana"]}])),
            ],
            &[0, 2, 4],
        ),
        case(
            "different elements may satisfy different conditions without $elemMatch",
            json!({"container_registry_metadata.owners.name": "ana", "container_registry_metadata.owners.role": "admin"}),
            vec![
                owners(json!([{"name": "ana", "role": "dev"}, {"name": "bo", "role": "admin"}])),
                owners(json!([{"name": "ana", "role": "admin"}])),
                owners(json!([{"name": "bo", "role": "dev"}])),
            ],
            &[0, 1],
        ),
        case(
            "$elemMatch on objects needs one element to match the whole filter",
            json!({"container_registry_metadata.owners": {"$elemMatch": {"name": "ana", "role": "admin"}}}),
            vec![
                owners(json!([{"name": "ana", "role": "dev"}, {"name": "bo", "role": "admin"}])),
                owners(json!([{"name": "ana", "role": "admin", "since": 2020}])),
                owners(json!({"name": "ana", "role": "admin"})),
            ],
            &[1],
        ),
        case(
            "null through an array of objects: an element lacking the field",
            json!({"m.a.b": null}),
            vec![
                json!({"m": {"a": [{"b": 1}, {}]}}),
                json!({"m": {"a": [1, 2]}}),
                json!({"m": {"a": []}}),
                json!({"m": {"a": 5}}),
                json!({"m": {"a": [{"b": null}]}}),
                json!({"m": {"a": [{"b": 1}]}}),
                json!({}),
            ],
            &[0, 3, 4, 6],
        ),
        case(
            "$exists false through an array",
            json!({"m.a.b": {"$exists": false}}),
            vec![
                json!({"m": {"a": [{"b": 1}, {}]}}),
                json!({"m": {"a": [1, 2]}}),
                json!({"m": {"a": []}}),
                json!({"m": {"a": 5}}),
                json!({"m": {"a": [{"b": null}]}}),
            ],
            &[1, 2, 3],
        ),
        case(
            "a numeric segment indexes an array, or names a key of an object",
            json!({"container_registry_tags.0": "ai"}),
            vec![
                json!({"container_registry_tags": ["ai", "x"]}),
                json!({"container_registry_tags": ["x", "ai"]}),
                json!({"container_registry_tags": {"0": "ai"}}),
            ],
            &[0, 2],
        ),
        case(
            "a numeric index inside a path",
            json!({"m.l.0.k": 1}),
            vec![
                json!({"m": {"l": [{"k": 1}, {"k": 2}]}}),
                json!({"m": {"l": [{"k": 2}, {"k": 1}]}}),
            ],
            &[0],
        ),
        case(
            "a range on an indexed element",
            json!({"dim.1": {"$gt": 25}}),
            vec![
                json!({"dim": [14, 21]}),
                json!({"dim": [14, 30]}),
                json!({"dim": [30]}),
            ],
            &[1],
        ),
        case(
            "arrays inside arrays are not traversed",
            json!({"a.b": 1}),
            vec![json!({"a": [[{"b": 1}]]}), json!({"a": [{"b": 1}]})],
            &[1],
        ),
        case(
            "a path through a scalar reaches nothing",
            json!({"a.b": {"$exists": true}}),
            vec![json!({"a": "str"}), json!({"a": {"b": 0}})],
            &[1],
        ),
        case(
            "storage info",
            json!({"container_registry_storage_info.storage_type": {"$in": ["s3", "fs"]}, "container_registry_storage_info.storage_size": {"$gte": 100}}),
            vec![
                json!({"container_registry_storage_info": {"storage_type": "s3", "storage_size": 100}}),
                json!({"container_registry_storage_info": {"storage_type": "s3", "storage_size": -1}}),
                json!({"container_registry_storage_info": {"storage_type": "unknown", "storage_size": 500}}),
            ],
            &[0],
        ),
    ]);
}

#[test]
fn regex_not_and_logic() {
    let name = |n: Value| json!({"container_registry_name": n});
    run(vec![
        case(
            "$regex over strings and string elements",
            json!({"container_registry_name": {"$regex": "^reg"}}),
            vec![
                name(json!("registry")),
                name(json!("Registry")),
                name(json!("my-registry")),
                name(json!(["x", "regA"])),
                name(json!(5)),
                json!({}),
            ],
            &[0, 3],
        ),
        case(
            "$options i",
            json!({"container_registry_name": {"$regex": "^reg", "$options": "i"}}),
            vec![
                name(json!("registry")),
                name(json!("REGISTRY")),
                name(json!("my-registry")),
            ],
            &[0, 1],
        ),
        case(
            "$options m",
            json!({"s": {"$regex": "^b", "$options": "m"}}),
            vec![json!({"s": "a\nb"}), json!({"s": "b"}), json!({"s": "a"})],
            &[0, 1],
        ),
        case(
            "no m: ^ is the start of the string",
            json!({"s": {"$regex": "^b"}}),
            vec![json!({"s": "a\nb"}), json!({"s": "b"})],
            &[1],
        ),
        case(
            "$options s",
            json!({"s": {"$regex": "a.b", "$options": "s"}}),
            vec![json!({"s": "a\nb"})],
            &[0],
        ),
        case(
            "no s: dot does not match a newline",
            json!({"s": {"$regex": "a.b"}}),
            vec![json!({"s": "a\nb"})],
            &[],
        ),
        case(
            "$options x",
            json!({"s": {"$regex": "a b # comment", "$options": "x"}}),
            vec![json!({"s": "ab"}), json!({"s": "a b"})],
            &[0],
        ),
        case(
            "an unanchored regex",
            json!({"s": {"$regex": "gist"}}),
            vec![json!({"s": "registry"}), json!({"s": "gis"})],
            &[0],
        ),
        case(
            "$not with $regex matches missing fields and non-matching strings",
            json!({"container_registry_name": {"$not": {"$regex": "^reg"}}}),
            vec![
                name(json!("registry")),
                name(json!("other")),
                json!({}),
                name(json!(["a", "reg"])),
            ],
            &[1, 2],
        ),
        case(
            "$not matches missing fields and other types",
            json!({"n": {"$not": {"$gt": 5}}}),
            vec![
                json!({"n": 3}),
                json!({"n": 7}),
                json!({}),
                json!({"n": "x"}),
                json!({"n": [1, 7]}),
            ],
            &[0, 2, 3],
        ),
        case(
            "$not of several operators negates their conjunction",
            json!({"n": {"$not": {"$gt": 1, "$lt": 5}}}),
            vec![json!({"n": 3}), json!({"n": 7}), json!({"n": 0})],
            &[1, 2],
        ),
        case(
            "$nor matches documents that fail every clause",
            json!({"$nor": [{"a": 1}, {"b": 2}]}),
            vec![
                json!({"a": 1}),
                json!({"b": 2}),
                json!({"a": 2, "b": 1}),
                json!({}),
            ],
            &[2, 3],
        ),
        case(
            "$or",
            json!({"$or": [{"a": 1}, {"b": {"$exists": true}}]}),
            vec![json!({"a": 1}), json!({"b": null}), json!({"a": 2})],
            &[0, 1],
        ),
        case(
            "$and of ranges on an array",
            json!({"$and": [{"a": {"$gt": 1}}, {"a": {"$lt": 3}}]}),
            vec![json!({"a": 2}), json!({"a": 3}), json!({"a": [0, 5]})],
            &[0, 2],
        ),
        case(
            "top-level fields and $or are AND-ed",
            json!({"a": 1, "$or": [{"b": 1}, {"c": 1}]}),
            vec![json!({"a": 1, "b": 1}), json!({"a": 1}), json!({"c": 1})],
            &[0],
        ),
        case(
            "$elemMatch with $not inside",
            json!({"t": {"$elemMatch": {"$not": {"$eq": "x"}}}}),
            vec![
                json!({"t": ["x"]}),
                json!({"t": ["x", "y"]}),
                json!({"t": []}),
            ],
            &[1],
        ),
    ]);
}

fn filter_error(filter: Value) -> QueryError {
    match Filter::parse(&filter) {
        Ok(f) => panic!("{filter} parsed as {f:?}"),
        Err(e) => e,
    }
}

#[test]
fn filter_errors_name_the_construct() {
    let mut deep = json!({"a": 1});
    for _ in 0..40 {
        deep = json!({"$and": [deep]});
    }
    let cases: Vec<(Value, &str)> = vec![
        (json!([1]), "JSON object"),
        (json!("a"), "JSON object"),
        (json!({"$where": "this.a == 1"}), "$where"),
        (json!({"$expr": {"$eq": ["$a", 1]}}), "$expr"),
        (json!({"$text": {"$search": "x"}}), "$text"),
        (json!({"$foo": 1}), "$foo"),
        (json!({"a": {"$expr": 1}}), "$expr"),
        (json!({"a": {"$foo": 1}}), "$foo"),
        (json!({"a": {"$type": "string"}}), "$type"),
        (json!({"a": {"$in": 1}}), "$in"),
        (json!({"a": {"$nin": "x"}}), "$nin"),
        (json!({"a": {"$all": {}}}), "$all"),
        (json!({"a": {"$in": [{"$gt": 1}]}}), "$in"),
        (json!({"a": {"$size": -1}}), "$size"),
        (json!({"a": {"$size": 1.5}}), "$size"),
        (json!({"a": {"$size": "2"}}), "$size"),
        (json!({"a": {"$regex": "("}}), "$regex"),
        (json!({"a": {"$regex": 5}}), "$regex"),
        (json!({"a": {"$regex": "a", "$options": "g"}}), "'g'"),
        (json!({"a": {"$options": "i"}}), "$options"),
        (json!({"$and": []}), "$and"),
        (json!({"$or": {}}), "$or"),
        (json!({"$nor": [1]}), "$nor"),
        (json!({"a": {"$not": 5}}), "$not"),
        (json!({"a": {"$not": {}}}), "$not"),
        (json!({"a": {"$exists": "yes"}}), "$exists"),
        (json!({"a": {"$gt": [1]}}), "$gt"),
        (json!({"a": {"$lte": {"x": 1}}}), "$lte"),
        (json!({"a": {"$elemMatch": 1}}), "$elemMatch"),
        (json!({"a": {"$eq": 1, "b": 2}}), "mixes"),
        (json!({"": 1}), "empty"),
        (json!({"a..b": 1}), "a..b"),
        (json!({"a.$.b": 1}), "$"),
        (deep, "levels deep"),
        (json!({"a": {"$in": (0..1001).collect::<Vec<_>>()}}), "$in"),
        (json!({"a": {"$in": (0..6000).collect::<Vec<_>>()}}), "5000"),
    ];
    for (filter, needle) in cases {
        let e = filter_error(filter.clone());
        assert_eq!(e.code(), "invalid_filter", "{filter}");
        assert!(
            e.to_string().contains(needle),
            "{filter}: '{e}' does not mention {needle}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Updates.

fn applied(update: Value, mut doc: Value) -> Value {
    let u = Update::parse(&update).unwrap_or_else(|e| panic!("{update}: {e}"));
    u.apply(&mut doc)
        .unwrap_or_else(|e| panic!("{update} on {doc}: {e}"));
    doc
}

fn apply_error(update: Value, doc: Value) -> QueryError {
    let u = Update::parse(&update).unwrap_or_else(|e| panic!("{update}: {e}"));
    let mut after = doc.clone();
    let e = u
        .apply(&mut after)
        .expect_err(&format!("{update} applied to {doc}"));
    assert_eq!(
        after, doc,
        "a failed update must leave the document unchanged"
    );
    e
}

#[test]
fn set_and_unset() {
    assert_eq!(
        applied(json!({"$set": {"a.b.c": 1}}), json!({})),
        json!({"a": {"b": {"c": 1}}})
    );
    assert_eq!(
        applied(json!({"$set": {"a": 2}}), json!({"a": 1, "b": 1})),
        json!({"a": 2, "b": 1})
    );
    assert_eq!(
        applied(json!({"$set": {"t.1": "z"}}), json!({"t": ["x", "y"]})),
        json!({"t": ["x", "z"]})
    );
    assert_eq!(
        applied(json!({"$set": {"t.3": "w"}}), json!({"t": ["x"]})),
        json!({"t": ["x", null, null, "w"]})
    );
    assert_eq!(
        applied(json!({"$set": {"t.0.k": 1}}), json!({"t": [{"j": 0}]})),
        json!({"t": [{"j": 0, "k": 1}]})
    );
    assert_eq!(
        applied(json!({"$set": {"m.0": 1}}), json!({"m": {}})),
        json!({"m": {"0": 1}})
    );
    assert_eq!(
        applied(
            json!({"container_registry_name": "x", "b": [1]}),
            json!({"container_registry_name": "y"})
        ),
        json!({"container_registry_name": "x", "b": [1]})
    );
    assert_eq!(
        applied(json!({"$unset": {"a": ""}}), json!({"a": 1, "b": 2})),
        json!({"b": 2})
    );
    assert_eq!(
        applied(json!({"$unset": {"z": ""}}), json!({"a": 1})),
        json!({"a": 1})
    );
    assert_eq!(
        applied(json!({"$unset": {"a.b.c": 1}}), json!({"a": 1})),
        json!({"a": 1})
    );
    assert_eq!(
        applied(json!({"$unset": {"t.0": ""}}), json!({"t": [1, 2]})),
        json!({"t": [null, 2]})
    );
    assert_eq!(
        applied(
            json!({"$unset": {"m.k": ""}}),
            json!({"m": {"j": 1, "k": 2, "l": 3}})
        ),
        json!({"m": {"j": 1, "l": 3}})
    );
    // Key order is kept when a field is removed.
    let after = applied(
        json!({"$unset": {"b": ""}}),
        json!({"a": 1, "b": 2, "c": 3}),
    );
    assert_eq!(
        after.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["a", "c"]
    );

    for (update, doc, needle) in [
        (json!({"$set": {"a.b": 1}}), json!({"a": 5}), "'b'"),
        (json!({"$set": {"a.b": 1}}), json!({"a": null}), "'b'"),
        (json!({"$set": {"t.x": 1}}), json!({"t": [1]}), "'x'"),
        (json!({"$set": {"t.5000": 1}}), json!({"t": []}), "pad"),
    ] {
        let e = apply_error(update.clone(), doc);
        assert_eq!(e.code(), "invalid_update");
        assert!(e.to_string().contains(needle), "{update}: {e}");
    }
}

#[test]
fn array_operators() {
    assert_eq!(
        applied(json!({"$addToSet": {"t": "a"}}), json!({})),
        json!({"t": ["a"]})
    );
    assert_eq!(
        applied(json!({"$addToSet": {"t": "a"}}), json!({"t": ["a", "b"]})),
        json!({"t": ["a", "b"]})
    );
    assert_eq!(
        applied(
            json!({"$addToSet": {"t": {"$each": ["a", "c", "c"]}}}),
            json!({"t": ["a"]})
        ),
        json!({"t": ["a", "c"]})
    );
    assert_eq!(
        applied(json!({"$addToSet": {"n": 1.0}}), json!({"n": [1]})),
        json!({"n": [1]})
    );
    assert_eq!(
        applied(
            json!({"$addToSet": {"o": {"b": 1, "a": 2}}}),
            json!({"o": [{"a": 2, "b": 1}]})
        ),
        json!({"o": [{"a": 2, "b": 1}]})
    );
    assert_eq!(
        applied(json!({"$addToSet": {"m.t": "x"}}), json!({})),
        json!({"m": {"t": ["x"]}})
    );
    assert_eq!(
        applied(json!({"$addToSet": {"t": [1, 2]}}), json!({"t": [1, 2]})),
        json!({"t": [1, 2, [1, 2]]})
    );
    assert_eq!(
        applied(json!({"$push": {"t": "a"}}), json!({"t": ["a"]})),
        json!({"t": ["a", "a"]})
    );
    assert_eq!(
        applied(json!({"$push": {"t": {"$each": [1, 2]}}}), json!({})),
        json!({"t": [1, 2]})
    );
    assert_eq!(
        applied(json!({"$push": {"t": {"$each": []}}}), json!({})),
        json!({"t": []})
    );
    assert_eq!(
        applied(json!({"$push": {"t": [1]}}), json!({"t": []})),
        json!({"t": [[1]]})
    );
    assert_eq!(
        applied(json!({"$pull": {"t": "a"}}), json!({"t": ["a", "b", "a"]})),
        json!({"t": ["b"]})
    );
    assert_eq!(
        applied(
            json!({"$pull": {"t": {"$in": ["a", "b"]}}}),
            json!({"t": ["a", "b", "c"]})
        ),
        json!({"t": ["c"]})
    );
    assert_eq!(applied(json!({"$pull": {"t": "a"}}), json!({})), json!({}));
    assert_eq!(
        applied(json!({"$pull": {"m.t": "a"}}), json!({"m": 1})),
        json!({"m": 1})
    );
    assert_eq!(
        applied(
            json!({"$pull": {"n": {"$gte": 6}}}),
            json!({"n": [3, 6, 9]})
        ),
        json!({"n": [3]})
    );
    assert_eq!(
        applied(json!({"$pull": {"n": 1}}), json!({"n": [1.0, 2]})),
        json!({"n": [2]})
    );
    // A value pull is exact equality; an array value is compared whole.
    assert_eq!(
        applied(
            json!({"$pull": {"n": [1, 2]}}),
            json!({"n": [[1, 2], 1, [2, 1]]})
        ),
        json!({"n": [1, [2, 1]]})
    );
    // A document condition is a query on each element (extra fields do not matter).
    assert_eq!(
        applied(
            json!({"$pull": {"container_registry_metadata.owners": {"name": "ana"}}}),
            json!({"container_registry_metadata": {"owners": [{"name": "ana", "role": "admin"}, {"name": "bo"}, "ana"]}})
        ),
        json!({"container_registry_metadata": {"owners": [{"name": "bo"}, "ana"]}})
    );

    for (update, doc, needle) in [
        (json!({"$push": {"t": 1}}), json!({"t": "str"}), "$push"),
        (
            json!({"$addToSet": {"t": 1}}),
            json!({"t": {"a": 1}}),
            "$addToSet",
        ),
        (
            json!({"$addToSet": {"t": 1}}),
            json!({"t": null}),
            "$addToSet",
        ),
        (json!({"$pull": {"t": 1}}), json!({"t": 1}), "$pull"),
    ] {
        let e = apply_error(update.clone(), doc);
        assert!(e.to_string().contains(needle), "{update}: {e}");
    }
}

#[test]
fn updates_are_all_or_nothing() {
    // The $set would succeed, the $push fails: nothing changes.
    let e = apply_error(
        json!({"$set": {"a": 1}, "$push": {"b": 1}}),
        json!({"b": "str"}),
    );
    assert_eq!(e.code(), "invalid_update");
}

#[test]
fn update_paths_are_reported() {
    let u =
        Update::parse(&json!({"$set": {"b.c": 1, "a": 2}, "$unset": {"d": ""}, "$push": {"e": 1}}))
            .unwrap();
    let mut paths: Vec<&str> = u.paths().collect();
    paths.sort();
    assert_eq!(paths, ["a", "b.c", "d", "e"]);
    let u = Update::parse(&json!({"container_registry_id": "x"})).unwrap();
    assert_eq!(u.paths().collect::<Vec<_>>(), ["container_registry_id"]);
}

#[test]
fn update_errors_name_the_construct() {
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "invalid_update", "empty"),
        (json!([]), "invalid_update", "JSON object"),
        (json!(null), "invalid_update", "JSON object"),
        (json!({"$inc": {"a": 1}}), "invalid_update", "$inc"),
        (json!({"$rename": {"a": "b"}}), "invalid_update", "$rename"),
        (json!({"$set": {"a": 1}, "b": 2}), "invalid_update", "mixes"),
        (json!({"$set": {}}), "invalid_update", "$set"),
        (json!({"$set": 1}), "invalid_update", "$set"),
        (json!({"$set": {"a..b": 1}}), "invalid_update", "a..b"),
        (json!({"$set": {"a.$.b": 1}}), "invalid_update", "$"),
        (json!({"a.b": 1}), "invalid_update", "a.b"),
        (
            json!({"$push": {"t": {"$each": [1], "$slice": 2}}}),
            "invalid_update",
            "$slice",
        ),
        (
            json!({"$push": {"t": {"$each": 1}}}),
            "invalid_update",
            "$each",
        ),
        (
            json!({"$addToSet": {"t": {"$each": "x"}}}),
            "invalid_update",
            "$each",
        ),
        (
            json!({"$pull": {"t": {"$foo": 1}}}),
            "invalid_update",
            "$foo",
        ),
        (
            json!({"$set": {"a": deep}}),
            "invalid_update",
            "levels deep",
        ),
        (
            json!({"$set": {"a": 1}, "$unset": {"a": ""}}),
            "update_conflict",
            "'a'",
        ),
        (
            json!({"$set": {"a.b": 1, "a": {}}}),
            "update_conflict",
            "'a.b'",
        ),
        (
            json!({"$push": {"t": 1}, "$pull": {"t": 2}}),
            "update_conflict",
            "'t'",
        ),
        (
            json!({"$set": {"m.x.y": 1}, "$addToSet": {"m.x": 2}}),
            "update_conflict",
            "'m.x'",
        ),
    ];
    for (update, code, needle) in cases {
        let e = Update::parse(&update).expect_err(&update.to_string());
        assert_eq!(e.code(), code, "{update}: {e}");
        assert!(
            e.to_string().contains(needle),
            "{update}: '{e}' does not mention {needle}"
        );
    }
    // Not conflicts: siblings, and a name that merely starts like another.
    for ok in [
        json!({"$set": {"a.b": 1}, "$push": {"a.c": 1}}),
        json!({"$set": {"ab": 1, "a": 2}}),
        json!({"$set": {"a.b": 1, "a-b": 2}}),
    ] {
        Update::parse(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn ops_apply_in_path_order_as_mongodb_does() {
    // "t.3.b" sorts before "t.5": the array is padded to 4 with an object, then to 6.
    let after = applied(json!({"$set": {"t.5": "x", "t.3.b": 1}}), json!({"t": []}));
    assert_eq!(after, json!({"t": [null, null, null, {"b": 1}, null, "x"]}));
}

// ---------------------------------------------------------------------------------------------
// Parsers under arbitrary and hostile input.

/// Drops a deep value without recursion (serde_json's own drop recurses).
fn dismantle(v: Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

fn nested(depth: usize, object: bool) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        // Built by hand: `json!` would serialize `v` again, recursively.
        v = if object {
            let mut m = serde_json::Map::new();
            m.insert("$and".to_string(), Value::Array(vec![v]));
            Value::Object(m)
        } else {
            Value::Array(vec![v])
        };
    }
    v
}

#[test]
fn very_deep_input_is_refused_without_overflowing_the_stack() {
    let start = Instant::now();
    for object in [false, true] {
        let deep = nested(100_000, object);
        let as_filter = json!({"a": {"$in": [Value::Null]}});
        let mut wrapped = as_filter;
        wrapped["a"]["$in"][0] = deep;
        assert!(Filter::parse(&wrapped).is_err());
        let deep = wrapped["a"]["$in"].as_array_mut().unwrap().pop().unwrap();
        assert!(Filter::parse(&deep).is_err());
        let mut set = json!({"$set": {"a": null}});
        set["$set"]["a"] = deep;
        assert!(Update::parse(&set).is_err());
        // A deep *document* is evaluated and updated without recursing into it.
        let mut doc = json!({"a": null, "b": 1});
        doc["a"] = set["$set"].as_object_mut().unwrap().remove("a").unwrap();
        for f in [
            json!({"a.b.c": 1}),
            json!({"a": [1]}),
            json!({"a": {"$size": 1}}),
            json!({"a": {"$ne": {"x": 1}}}),
        ] {
            let _ = Filter::parse(&f).unwrap().matches(&doc);
        }
        // Only the fields an update touches are copied, so other fields may be arbitrarily deep.
        Update::parse(&json!({"$set": {"b": 2}, "$push": {"c": 1}}))
            .unwrap()
            .apply(&mut doc)
            .unwrap();
        assert_eq!(doc["b"], json!(2));
        dismantle(doc);
    }
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn the_biggest_accepted_filter_evaluates_quickly() {
    // Close to every limit at once: many regexes and a long $in, over documents with lists.
    let values: Vec<Value> = (0..900).map(|i| json!(format!("v{i}"))).collect();
    let ors: Vec<Value> = (0..60)
        .map(|i| json!({format!("m.l.k{i}"): {"$regex": "(a|b)*c$", "$options": "i"}, "t": {"$nin": values[..50].to_vec()}}))
        .collect();
    let filter = json!({"t": {"$in": values}, "$or": ors});
    let f = Filter::parse(&filter).unwrap();
    let doc = json!({"t": (0..200).map(|i| format!("v{i}")).collect::<Vec<_>>(), "m": {"l": (0..50).map(|i| json!({format!("k{i}"): "ab".repeat(200)})).collect::<Vec<_>>()}});
    let start = Instant::now();
    for _ in 0..5 {
        let _ = f.matches(&doc);
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![Just("a"), Just("b"), Just("a.b"), Just("0"), Just("t.0"), Just(""), Just("a..b")].prop_map(str::to_string),
        3 => prop_oneof![
            Just("$eq"), Just("$ne"), Just("$gt"), Just("$gte"), Just("$lt"), Just("$lte"), Just("$in"),
            Just("$nin"), Just("$exists"), Just("$all"), Just("$size"), Just("$regex"), Just("$options"),
            Just("$not"), Just("$elemMatch"), Just("$and"), Just("$or"), Just("$nor"), Just("$where"),
            Just("$set"), Just("$unset"), Just("$push"), Just("$addToSet"), Just("$pull"), Just("$each"),
            Just("$slice"),
        ]
        .prop_map(str::to_string),
        1 => "[a-z$.0-9]{0,6}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("^a".to_string()),
            Just("(".to_string()),
            Just("imsx".to_string()),
            "[a-z()*^$|.]{0,8}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(input in arb_json(), doc in arb_json()) {
        if let Ok(f) = Filter::parse(&input) {
            let _ = f.matches(&doc);
            let _ = f.matches(&json!({"a": doc.clone(), "t": [doc.clone(), {"b": doc.clone()}]}));
        }
        if let Ok(u) = Update::parse(&input) {
            let _ = u.paths().count();
            let mut target = json!({"a": doc.clone(), "t": [1, {"b": 2}], "m": {}});
            let before = target.clone();
            if u.apply(&mut target).is_err() {
                prop_assert_eq!(target, before);
            }
        }
        // As the body of a field condition too.
        let _ = Filter::parse(&json!({"a": input.clone()}));
        let _ = Update::parse(&json!({"$set": {"a": input.clone()}, "$pull": {"t": input}}));
    }

    #[test]
    fn an_accepted_update_leaves_a_document_that_reflects_every_set(
        path in "[ab](\\.[ab0]){0,2}",
        value in arb_json(),
    ) {
        // $set of a path then reading it back with an equality filter finds the value.
        let mut set = serde_json::Map::new();
        set.insert(path.clone(), value.clone());
        let update = Update::parse(&json!({"$set": set})).unwrap();
        let mut doc = json!({});
        if update.apply(&mut doc).is_ok() {
            let mut filter = serde_json::Map::new();
            filter.insert(path, json!({"$eq": value}));
            if let Ok(f) = Filter::parse(&Value::Object(filter)) {
                prop_assert!(f.matches(&doc), "{} does not match its own $set", doc);
            }
        }
    }
}
