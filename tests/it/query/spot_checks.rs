//! A second engineer's spot checks of the filter semantics, written from MongoDB's manual
//! (query operators, "Query an Array", "Query on Embedded/Nested Documents"), independent of
//! the table in `query::semantics`.

use registry_db::query::Filter;
use serde_json::{Value, json};

fn check(filter: Value, doc: Value, expected: bool) {
    let f = Filter::parse(&filter).unwrap_or_else(|e| panic!("{filter} should parse: {e}"));
    assert_eq!(f.matches(&doc), expected, "filter {filter} on {doc}");
}

#[test]
fn ne_and_nin_exclude_arrays_containing_the_value_and_keep_missing_fields() {
    check(
        json!({"tags": {"$ne": "ai"}}),
        json!({"tags": ["ai", "x"]}),
        false,
    );
    check(json!({"tags": {"$ne": "ai"}}), json!({"tags": ["x"]}), true);
    check(json!({"tags": {"$ne": "ai"}}), json!({}), true);
    check(
        json!({"tags": {"$nin": ["ai", "gpu"]}}),
        json!({"tags": ["gpu"]}),
        false,
    );
    check(json!({"tags": {"$nin": ["ai"]}}), json!({"other": 1}), true);
}

#[test]
fn null_matches_missing_and_null_but_exists_false_only_missing() {
    check(json!({"a": null}), json!({}), true);
    check(json!({"a": null}), json!({"a": null}), true);
    check(json!({"a": null}), json!({"a": 0}), false);
    check(json!({"a": {"$in": [null]}}), json!({}), true);
    check(json!({"a": {"$exists": false}}), json!({"a": null}), false);
    check(json!({"a": {"$exists": false}}), json!({}), true);
    check(json!({"a": {"$exists": true}}), json!({"a": null}), true);
    check(json!({"a": {"$ne": null}}), json!({}), false);
}

#[test]
fn arrays_match_whole_or_by_element() {
    check(json!({"a": [1, 2]}), json!({"a": [1, 2]}), true);
    check(json!({"a": [1, 2]}), json!({"a": [2, 1]}), false);
    check(json!({"a": [1, 2]}), json!({"a": [[1, 2], 3]}), true);
    check(json!({"a": 2}), json!({"a": [1, 2]}), true);
    check(json!({"a": {"$size": 0}}), json!({"a": []}), true);
    check(json!({"a": {"$size": 0}}), json!({}), false);
    check(
        json!({"a": {"$all": ["x", "y"]}}),
        json!({"a": ["y", "z", "x"]}),
        true,
    );
    check(
        json!({"a": {"$all": ["x", "y"]}}),
        json!({"a": ["x"]}),
        false,
    );
    check(json!({"a.0": "x"}), json!({"a": ["x", "y"]}), true);
    check(json!({"a.1": "x"}), json!({"a": ["x", "y"]}), false);
}

#[test]
fn ranges_on_arrays_may_be_met_by_different_elements_unless_elem_match() {
    // From "Query an Array": {dim_cm: {$gt: 15, $lt: 20}} matches [22.85, 10] (one element each).
    check(
        json!({"a": {"$gt": 15, "$lt": 20}}),
        json!({"a": [22.85, 10]}),
        true,
    );
    check(
        json!({"a": {"$elemMatch": {"$gt": 15, "$lt": 20}}}),
        json!({"a": [22.85, 10]}),
        false,
    );
    check(
        json!({"a": {"$elemMatch": {"$gt": 15, "$lt": 20}}}),
        json!({"a": [16, 30]}),
        true,
    );
}

#[test]
fn paths_traverse_arrays_of_objects() {
    let doc = json!({"m": {"mirrors": [{"region": "eu", "n": 1}, {"region": "us", "n": 2}]}});
    check(json!({"m.mirrors.region": "us"}), doc.clone(), true);
    check(
        json!({"m.mirrors.region": {"$ne": "us"}}),
        doc.clone(),
        false,
    );
    check(json!({"m.mirrors.n": {"$gte": 2}}), doc.clone(), true);
    check(json!({"m.mirrors.0.region": "eu"}), doc.clone(), true);
    check(json!({"m.mirrors.0.region": "us"}), doc, false);
}

#[test]
fn comparisons_are_type_bracketed() {
    check(json!({"n": 1}), json!({"n": 1.0}), true);
    check(json!({"n": "1"}), json!({"n": 1}), false);
    check(json!({"n": {"$gt": "5"}}), json!({"n": 10}), false);
    check(json!({"n": {"$lt": 5}}), json!({"n": "1"}), false);
    check(json!({"s": {"$gt": "a"}}), json!({"s": "b"}), true);
    check(
        json!({"o": {"x": 1, "y": 2}}),
        json!({"o": {"y": 2, "x": 1}}),
        true,
    );
}

#[test]
fn not_negates_and_matches_missing_and_other_types() {
    check(json!({"n": {"$not": {"$gt": 5}}}), json!({}), true);
    check(json!({"n": {"$not": {"$gt": 5}}}), json!({"n": 3}), true);
    check(json!({"n": {"$not": {"$gt": 5}}}), json!({"n": "x"}), true);
    check(json!({"n": {"$not": {"$gt": 5}}}), json!({"n": 6}), false);
    check(json!({"$nor": [{"a": 1}, {"b": 1}]}), json!({"a": 2}), true);
    check(
        json!({"$nor": [{"a": 1}, {"b": 1}]}),
        json!({"b": 1}),
        false,
    );
}

#[test]
fn regex_with_options_and_on_array_elements() {
    check(
        json!({"s": {"$regex": "^A", "$options": "i"}}),
        json!({"s": "abc"}),
        true,
    );
    check(json!({"s": {"$regex": "^A"}}), json!({"s": "abc"}), false);
    check(
        json!({"tags": {"$regex": "^gp"}}),
        json!({"tags": ["ai", "gpu"]}),
        true,
    );
    check(json!({"n": {"$regex": "1"}}), json!({"n": 1}), false);
}

#[test]
fn what_mongodb_refuses_is_a_clear_error() {
    for (filter, names) in [
        (json!({"$and": []}), "$and"),
        (json!({"a": {"$in": 1}}), "$in"),
        (json!({"a": {"$size": -1}}), "$size"),
        (json!({"a": {"$regex": "("}}), "$regex"),
        (json!({"$where": "this.a == 1"}), "$where"),
        (json!({"a": {"$foo": 1}}), "$foo"),
    ] {
        let err = Filter::parse(&filter)
            .expect_err(&filter.to_string())
            .to_string();
        assert!(err.contains(names), "{filter}: {err}");
    }
}

fn updated(update: Value, mut doc: Value) -> Value {
    registry_db::query::Update::parse(&update)
        .unwrap_or_else(|e| panic!("{update}: {e}"))
        .apply(&mut doc)
        .unwrap_or_else(|e| panic!("{update}: {e}"));
    doc
}

fn refused(update: Value, mut doc: Value) -> String {
    match registry_db::query::Update::parse(&update) {
        Err(e) => e.to_string(),
        Ok(u) => u
            .apply(&mut doc)
            .expect_err(&update.to_string())
            .to_string(),
    }
}

#[test]
fn update_operators_as_mongodb_documents_them() {
    assert_eq!(
        updated(json!({"$set": {"m.a.b": 1}}), json!({})),
        json!({"m": {"a": {"b": 1}}})
    );
    assert_eq!(
        updated(json!({"$unset": {"x": ""}}), json!({"y": 1})),
        json!({"y": 1})
    );
    assert_eq!(
        updated(json!({"$push": {"t": "a"}}), json!({})),
        json!({"t": ["a"]})
    );
    assert_eq!(
        updated(
            json!({"$push": {"t": {"$each": ["b", "b"]}}}),
            json!({"t": ["a"]})
        ),
        json!({"t": ["a", "b", "b"]})
    );
    assert_eq!(
        updated(
            json!({"$addToSet": {"t": {"$each": ["a", "c", "c"]}}}),
            json!({"t": ["a"]})
        ),
        json!({"t": ["a", "c"]})
    );
    assert_eq!(
        updated(
            json!({"$pull": {"t": {"$in": ["a", "c"]}}}),
            json!({"t": ["a", "b", "c", "a"]})
        ),
        json!({"t": ["b"]})
    );
    assert_eq!(updated(json!({"$pull": {"t": "z"}}), json!({})), json!({}));
    assert_eq!(
        updated(json!({"name": "n", "t": []}), json!({"name": "o", "k": 1})),
        json!({"name": "n", "t": [], "k": 1})
    );
}

#[test]
fn update_errors_mongodb_also_raises() {
    assert!(
        refused(
            json!({"$addToSet": {"t": "a"}}),
            json!({"t": "not an array"})
        )
        .contains("t")
    );
    assert!(refused(json!({"$push": {"t": 1}}), json!({"t": {"x": 1}})).contains("t"));
    assert!(refused(json!({"$set": {"a": 1}, "$unset": {"a.b": ""}}), json!({})).contains("a"));
    assert!(refused(json!({"$set": {"a.b": 1}}), json!({"a": 5})).contains("a"));
    assert!(refused(json!({"$rename": {"a": "b"}}), json!({})).contains("$rename"));
    assert!(refused(json!({"$set": {"a": 1}, "b": 2}), json!({})).contains('$'));
}
