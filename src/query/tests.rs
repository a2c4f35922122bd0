//! Unit tests of the parser and evaluator internals; the table-driven semantics live in
//! `tests/it/query/semantics.rs`.

use std::cmp::Ordering;

use serde_json::{Number, Value, json};

use super::limits::{check_size, depth_of};
use super::value::cmp_numbers;
use super::*;

fn n(v: Value) -> Number {
    match v {
        Value::Number(n) => n,
        other => panic!("{other} is not a number"),
    }
}

#[test]
fn numbers_compare_exactly_across_representations() {
    assert_eq!(cmp_numbers(&n(json!(1)), &n(json!(1.0))), Ordering::Equal);
    assert_eq!(cmp_numbers(&n(json!(-1)), &n(json!(-0.5))), Ordering::Less);
    assert_eq!(cmp_numbers(&n(json!(0)), &n(json!(-0.0))), Ordering::Equal);
    // 2^53 + 1 is not representable as f64: the integer is bigger than the float 2^53.
    assert_eq!(
        cmp_numbers(
            &n(json!(9007199254740993u64)),
            &n(json!(9007199254740992.0))
        ),
        Ordering::Greater
    );
    assert_eq!(
        cmp_numbers(&n(json!(u64::MAX)), &n(json!(1e300))),
        Ordering::Less
    );
    assert_eq!(
        cmp_numbers(&n(json!(i64::MIN)), &n(json!(-1e300))),
        Ordering::Greater
    );
    assert_eq!(
        cmp_numbers(&n(json!(u64::MAX)), &n(json!(i64::MIN))),
        Ordering::Greater
    );
    assert_eq!(cmp_numbers(&n(json!(2.5)), &n(json!(2))), Ordering::Greater);
}

#[test]
fn values_compare_only_within_a_kind() {
    assert!(values_equal(
        &json!({"a": 1, "b": [1, 2]}),
        &json!({"b": [1.0, 2], "a": 1.0})
    ));
    assert!(!values_equal(&json!([1, 2]), &json!([2, 1])));
    assert!(!values_equal(&json!(1), &json!("1")));
    assert!(!values_equal(&json!(0), &json!(false)));
    assert_eq!(compare_values(&json!("a"), &json!(1)), None);
    assert_eq!(
        compare_values(&json!(false), &json!(true)),
        Some(Ordering::Less)
    );
    // Code point order, not UTF-16 order.
    assert_eq!(
        compare_values(&json!("\u{FFFF}"), &json!("\u{10000}")),
        Some(Ordering::Less)
    );
}

#[test]
fn paths_are_validated() {
    assert!(Path::parse("a.b.0").is_ok());
    for bad in ["", ".a", "a.", "a..b", "a.$", "a.$[]", "$a"] {
        assert!(Path::parse(bad).is_err(), "{bad}");
    }
    let long = vec!["a"; MAX_PATH_SEGMENTS + 1].join(".");
    assert!(Path::parse(&long).is_err());
    assert_eq!(Path::index("0"), Some(0));
    assert_eq!(Path::index("12"), Some(12));
    assert_eq!(Path::index("012"), None);
    assert_eq!(Path::index("-1"), None);
    assert_eq!(Path::index("99999999999999999999999"), None);
}

#[test]
fn size_check_is_iterative_and_bounded() {
    let mut deep = json!(1);
    for _ in 0..10 {
        deep = json!([deep]);
    }
    assert_eq!(depth_of(&deep), 11);
    assert!(check_size(&deep, 11, 100, "filter").is_ok());
    assert!(check_size(&deep, 10, 100, "filter").is_err());
    assert!(check_size(&json!([1, 2, 3]), 5, 3, "filter").is_err());
    assert!(check_size(&json!([1, 2]), 5, 3, "filter").is_ok());
    // An empty container at the limit is fine.
    assert!(check_size(&json!([[]]), 2, 10, "filter").is_ok());
}

#[test]
fn regex_limits() {
    let long = "a".repeat(MAX_REGEX_LEN + 1);
    let e = Filter::parse(&json!({"a": {"$regex": long}})).unwrap_err();
    assert!(e.message().contains("longer than"), "{e}");
    // Compiles to more than the size limit.
    let e = Filter::parse(&json!({"a": {"$regex": "\\w{1000}\\w{1000}\\w{1000}"}})).unwrap_err();
    assert!(e.message().contains("$regex"), "{e}");
}

#[test]
fn parse_builds_the_expected_tree() {
    let f = Filter::parse(&json!({"a": {"$gt": 1, "$lt": 5}})).unwrap();
    let Filter::And(parts) = f else {
        panic!("{f:?}")
    };
    assert_eq!(parts.len(), 2);
    assert_eq!(Filter::parse(&json!({})).unwrap(), Filter::match_all());
    let f = Filter::parse(&json!({"a": 1})).unwrap();
    assert!(matches!(
        f,
        Filter::Field(FieldFilter {
            cond: Cond::Eq(_),
            ..
        })
    ));
}

#[test]
fn error_codes() {
    let e = Filter::parse(&json!(1)).unwrap_err();
    assert_eq!(e.code(), "invalid_filter");
    assert!(e.to_string().starts_with("invalid filter: "));
    let e = Update::parse(&json!({})).unwrap_err();
    assert_eq!(e.code(), "invalid_update");
    let e = Update::parse(&json!({"$set": {"a": 1}, "$unset": {"a": ""}})).unwrap_err();
    assert_eq!(e.code(), "update_conflict");
}

#[test]
fn an_update_creates_at_most_what_it_is_allowed_before_it_is_refused() {
    let doc = || json!({"a": [], "b": [], "c": {}});
    // 3 + 4 padding nulls, 1 object made for "c.x"'s missing "x" and one for "d": 9.
    let update =
        Update::parse(&json!({"$set": {"a.3": 1, "b.4": 1, "c.x.y": 1, "d.e": 1}})).unwrap();
    let mut at = doc();
    update.apply_within(&mut at, 9).unwrap();
    assert_eq!(at["a"], json!([null, null, null, 1]));
    assert_eq!(at["d"], json!({"e": 1}));
    let mut past = doc();
    let err = update.apply_within(&mut past, 8).unwrap_err();
    assert_eq!(err.code(), "entry_too_large");
    assert!(err.message().contains("more than 8 JSON values"), "{err}");
    // All or nothing.
    assert_eq!(past, doc());
}

#[test]
fn long_value_lists_keep_the_semantics_of_short_ones() {
    // The same conditions with 3 values (searched) and padded to 20 (hashed).
    let pad: Vec<Value> = (1000..1017).map(|i| json!(format!("pad{i}"))).collect();
    let docs = [
        json!({"x": 1}),
        json!({"x": 1.0}),
        json!({"x": [2, "a"]}),
        json!({"x": [[1, 2]]}),
        json!({"x": {"k": 1, "j": 2}}),
        json!({"x": null}),
        json!({}),
        json!({"x": [{"y": 1}]}),
    ];
    for base in [
        json!([1, "a"]),
        json!([null]),
        json!([[1, 2], {"j": 2.0, "k": 1}]),
        json!([2.0, "a"]),
    ] {
        let mut long = base.as_array().unwrap().clone();
        long.extend(pad.iter().cloned());
        for op in ["$in", "$nin", "$all"] {
            let short = Filter::parse(&json!({"x": {op: base}})).unwrap();
            let long_f = Filter::parse(&json!({"x": {op: long}})).unwrap();
            for d in &docs {
                let want = short.matches(d);
                if op == "$all" {
                    // Padding values no document holds: `$all` fails on them.
                    assert!(!long_f.matches(d), "{op} {d}");
                    let long_all = {
                        let mut v = base.as_array().unwrap().clone();
                        for _ in 0..10 {
                            v.extend(base.as_array().unwrap().iter().cloned());
                        }
                        Filter::parse(&json!({"x": {op: v}})).unwrap()
                    };
                    assert_eq!(long_all.matches(d), want, "{op} {base} {d}");
                } else {
                    assert_eq!(long_f.matches(d), want, "{op} {base} {d}");
                }
            }
        }
    }
}

#[test]
fn the_budget_counts_comparisons_and_stops_evaluation() {
    let doc = json!({"x": (0..100).collect::<Vec<_>>()});
    let f = Filter::parse(&json!({"x": {"$lt": -1}})).unwrap();
    // The array itself and its 100 elements.
    let exact = Budget::new(101);
    assert_eq!(f.matches_within(&doc, &exact), Ok(false));
    assert_eq!(exact.left(), 0);
    assert!(!exact.exhausted());
    let short = Budget::new(100);
    assert_eq!(f.matches_within(&doc, &short), Err(OverBudget));
    // A hash lookup costs one comparison, whatever the list's length.
    let many: Vec<i64> = (1000..2000).collect();
    let f = Filter::parse(&json!({"x": {"$in": many}})).unwrap();
    let b = Budget::new(1_000_000);
    assert_eq!(f.matches_within(&doc, &b), Ok(false));
    assert!(1_000_000 - b.left() <= 101 * 2 + 100, "{}", b.left());
}
