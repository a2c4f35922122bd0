//! Evaluation of a filter against a JSON document: the reference semantics every store uses.
//!
//! A path is resolved as MongoDB's matcher does (its `BSONElementIterator`):
//! - through objects, by key; a missing key, or a scalar where an object was needed, yields one
//!   "missing" value (which `null` equality and `$exists: false` match);
//! - through an array with more path to go: each element that is an object is searched with the
//!   remaining path (implicit traversal, one array level only: arrays directly inside arrays are
//!   not searched), and if the next segment is a canonical index ("0", "12"), the element at that
//!   position is continued with the rest of the path instead; scalar elements yield nothing;
//! - at the end of the path, an array yields itself and, for operators that expand arrays (all
//!   but `$size`, `$elemMatch` and `$exists`), each of its elements.
//!
//! A condition on a path holds when it holds for at least one yielded value; `$ne`, `$nin`,
//! `$not` and `$nor` are the plain negations of their positive forms over the whole document.
//!
//! Recursion is bounded by the path length and the filter depth, never by the document depth.

use serde_json::Value;

use super::filter::{Cond, ElemMatch, FieldFilter, Filter};
use super::path::Path;
use super::value::{compare_values, values_equal};

impl Filter {
    /// Whether `doc` matches, with MongoDB's semantics (see `QUERY.md`).
    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.matches(doc)),
            Filter::Field(FieldFilter { path, cond }) => cond.matches_path(doc, path.segments()),
        }
    }
}

impl Cond {
    /// Whether the condition holds for the values `segs` reaches in `doc`.
    pub(crate) fn matches_path(&self, doc: &Value, segs: &[String]) -> bool {
        match self {
            Cond::Ne(v) => !Cond::Eq(v.clone()).matches_path(doc, segs),
            Cond::Nin(vs) => !in_path(doc, segs, vs),
            Cond::Not(cs) => !cs.iter().all(|c| c.matches_path(doc, segs)),
            Cond::Exists(want) => any_hit(doc, segs, false, &mut |h| h.is_some()) == *want,
            Cond::All(vs) => {
                !vs.is_empty()
                    && vs
                        .iter()
                        .all(|v| any_hit(doc, segs, true, &mut |h| eq_single(h, v)))
            }
            Cond::In(vs) => in_path(doc, segs, vs),
            Cond::Size(_) | Cond::ElemMatch(_) => {
                any_hit(doc, segs, false, &mut |h| self.matches_single(h))
            }
            Cond::Eq(_)
            | Cond::Gt(_)
            | Cond::Gte(_)
            | Cond::Lt(_)
            | Cond::Lte(_)
            | Cond::Regex(_) => any_hit(doc, segs, true, &mut |h| self.matches_single(h)),
        }
    }

    /// Whether the condition holds for one value on its own (`None` = missing), with no array
    /// expansion: the semantics inside `$elemMatch`.
    pub(crate) fn matches_single(&self, h: Option<&Value>) -> bool {
        match self {
            Cond::Eq(v) => eq_single(h, v),
            Cond::Ne(v) => !eq_single(h, v),
            Cond::In(vs) => vs.iter().any(|v| eq_single(h, v)),
            Cond::Nin(vs) => !vs.iter().any(|v| eq_single(h, v)),
            Cond::Gt(v) => cmp_single(h, v, |o| o.is_gt()),
            Cond::Gte(v) => cmp_single(h, v, |o| o.is_ge()),
            Cond::Lt(v) => cmp_single(h, v, |o| o.is_lt()),
            Cond::Lte(v) => cmp_single(h, v, |o| o.is_le()),
            Cond::Exists(want) => h.is_some() == *want,
            Cond::All(vs) => !vs.is_empty() && vs.iter().all(|v| eq_single(h, v)),
            Cond::Size(n) => matches!(h, Some(Value::Array(a)) if a.len() as u64 == *n),
            Cond::Regex(r) => matches!(h, Some(Value::String(s)) if r.is_match(s)),
            Cond::Not(cs) => !cs.iter().all(|c| c.matches_single(h)),
            Cond::ElemMatch(em) => {
                let Some(Value::Array(items)) = h else {
                    return false;
                };
                items.iter().any(|e| match em {
                    ElemMatch::Value(cs) => cs.iter().all(|c| c.matches_single(Some(e))),
                    ElemMatch::Doc(f) => e.is_object() && f.matches(e),
                })
            }
        }
    }
}

fn in_path(doc: &Value, segs: &[String], vs: &[Value]) -> bool {
    any_hit(doc, segs, true, &mut |h| vs.iter().any(|v| eq_single(h, v)))
}

/// `null` matches a missing value and a null; anything else matches an equal value.
fn eq_single(h: Option<&Value>, v: &Value) -> bool {
    match h {
        None => v.is_null(),
        Some(x) => values_equal(x, v),
    }
}

fn cmp_single(h: Option<&Value>, v: &Value, want: fn(std::cmp::Ordering) -> bool) -> bool {
    match h {
        // `$gte: null` and `$lte: null` match a missing field, as equality to null does.
        None => v.is_null() && want(std::cmp::Ordering::Equal),
        Some(x) => compare_values(x, v).is_some_and(want),
    }
}

/// Calls `f` on every value `segs` reaches from `v` (see the module documentation), `None` for
/// "missing"; returns true as soon as `f` does.
pub(crate) fn any_hit(
    v: &Value,
    segs: &[String],
    expand: bool,
    f: &mut dyn FnMut(Option<&Value>) -> bool,
) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        if f(Some(v)) {
            return true;
        }
        if expand && let Value::Array(items) = v {
            return items.iter().any(|e| f(Some(e)));
        }
        return false;
    };
    match v {
        Value::Object(map) => match map.get(first) {
            Some(child) => any_hit(child, rest, expand, f),
            None => f(None),
        },
        Value::Array(items) => {
            let index = Path::index(first);
            for (i, e) in items.iter().enumerate() {
                let hit = if index == Some(i) {
                    // The element at that position, continued with the rest of the path.
                    if rest.is_empty() || e.is_object() || e.is_array() {
                        any_hit(e, rest, expand, f)
                    } else {
                        false
                    }
                } else if e.is_object() {
                    any_hit(e, segs, expand, f)
                } else {
                    false
                };
                if hit {
                    return true;
                }
            }
            false
        }
        _ => f(None),
    }
}
