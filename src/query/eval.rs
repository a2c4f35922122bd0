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

use std::cell::Cell;

use serde_json::Value;

use super::filter::{Cond, ElemMatch, FieldFilter, Filter};
use super::path::Path;
use super::value::{ValueSet, compare_values, values_equal};

/// The work one request may spend evaluating filters, counted in comparisons: one per value a
/// path reaches or an array element it passes, one per value of a short `$in` list it is compared
/// with (one per hash lookup for a long one), and one per 64 bytes a `$regex` reads. Shared by
/// every evaluation of one request; [`Filter::matches_within`] says when it ran out.
#[derive(Debug)]
pub struct Budget {
    left: Cell<u64>,
    over: Cell<bool>,
}

/// A filter's evaluation ran out of its [`Budget`]: its answer is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

impl Budget {
    pub fn new(comparisons: u64) -> Budget {
        Budget {
            left: Cell::new(comparisons),
            over: Cell::new(false),
        }
    }

    /// For evaluations that are bounded otherwise (an update's `$pull`, tests).
    pub fn unlimited() -> Budget {
        Budget::new(u64::MAX)
    }

    /// Comparisons still available.
    pub fn left(&self) -> u64 {
        self.left.get()
    }

    /// Whether an evaluation has wanted more than was left.
    pub fn exhausted(&self) -> bool {
        self.over.get()
    }

    /// Takes `n` comparisons; false (and exhausted from then on) when fewer are left.
    fn spend(&self, n: u64) -> bool {
        match self.left.get().checked_sub(n) {
            Some(left) if !self.over.get() => {
                self.left.set(left);
                true
            }
            _ => {
                self.left.set(0);
                self.over.set(true);
                false
            }
        }
    }
}

impl Filter {
    /// Whether `doc` matches, with MongoDB's semantics (see `QUERY.md`), however long it takes.
    pub fn matches(&self, doc: &Value) -> bool {
        self.eval(doc, &Budget::unlimited())
    }

    /// Whether `doc` matches, spending from `budget`; `Err` when it ran out before an answer.
    pub fn matches_within(&self, doc: &Value, budget: &Budget) -> Result<bool, OverBudget> {
        let matched = self.eval(doc, budget);
        if budget.exhausted() {
            Err(OverBudget)
        } else {
            Ok(matched)
        }
    }

    /// Once the budget is exhausted every condition answers false at once (and the answer is
    /// thrown away by `matches_within`).
    pub(crate) fn eval(&self, doc: &Value, b: &Budget) -> bool {
        if b.exhausted() {
            return false;
        }
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.eval(doc, b)),
            Filter::Or(fs) => fs.iter().any(|f| f.eval(doc, b)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.eval(doc, b)),
            Filter::Field(FieldFilter { path, cond }) => cond.matches_path(doc, path.segments(), b),
        }
    }
}

impl Cond {
    /// Whether the condition holds for the values `segs` reaches in `doc`.
    pub(crate) fn matches_path(&self, doc: &Value, segs: &[String], b: &Budget) -> bool {
        match self {
            Cond::Ne(v) => !any_hit(doc, segs, true, b, &mut |h| eq_single(h, v)),
            Cond::Nin(vs) => !in_path(doc, segs, vs, b),
            Cond::Not(cs) => !cs.iter().all(|c| c.matches_path(doc, segs, b)),
            Cond::Exists(want) => any_hit(doc, segs, false, b, &mut |h| h.is_some()) == *want,
            Cond::All(vs) => all_path(doc, segs, vs, b),
            Cond::In(vs) => in_path(doc, segs, vs, b),
            Cond::Size(_) | Cond::ElemMatch(_) => {
                any_hit(doc, segs, false, b, &mut |h| self.matches_single(h, b))
            }
            Cond::Eq(_)
            | Cond::Gt(_)
            | Cond::Gte(_)
            | Cond::Lt(_)
            | Cond::Lte(_)
            | Cond::Regex(_) => any_hit(doc, segs, true, b, &mut |h| self.matches_single(h, b)),
        }
    }

    /// Whether the condition holds for one value on its own (`None` = missing), with no array
    /// expansion: the semantics inside `$elemMatch`.
    pub(crate) fn matches_single(&self, h: Option<&Value>, b: &Budget) -> bool {
        match self {
            Cond::Eq(v) => eq_single(h, v),
            Cond::Ne(v) => !eq_single(h, v),
            Cond::In(vs) => in_single(h, vs, b),
            Cond::Nin(vs) => !in_single(h, vs, b),
            Cond::Gt(v) => cmp_single(h, v, |o| o.is_gt()),
            Cond::Gte(v) => cmp_single(h, v, |o| o.is_ge()),
            Cond::Lt(v) => cmp_single(h, v, |o| o.is_lt()),
            Cond::Lte(v) => cmp_single(h, v, |o| o.is_le()),
            Cond::Exists(want) => h.is_some() == *want,
            // Equal to every listed value: they are all one value.
            Cond::All(vs) => vs.classes() == 1 && in_single(h, vs, b),
            Cond::Size(n) => matches!(h, Some(Value::Array(a)) if a.len() as u64 == *n),
            Cond::Regex(r) => match h {
                Some(Value::String(s)) => b.spend(s.len() as u64 / 64) && r.is_match(s),
                _ => false,
            },
            Cond::Not(cs) => !cs.iter().all(|c| c.matches_single(h, b)),
            Cond::ElemMatch(em) => {
                let Some(Value::Array(items)) = h else {
                    return false;
                };
                items.iter().any(|e| {
                    b.spend(1)
                        && match em {
                            ElemMatch::Value(cs) => cs.iter().all(|c| c.matches_single(Some(e), b)),
                            ElemMatch::Doc(f) => e.is_object() && f.eval(e, b),
                        }
                })
            }
        }
    }
}

/// Whether `h` equals a listed value.
fn in_single(h: Option<&Value>, vs: &ValueSet, b: &Budget) -> bool {
    let mut compared = 0;
    let class = vs.class_of(h, &mut compared);
    b.spend(compared) && class.is_some()
}

fn in_path(doc: &Value, segs: &[String], vs: &ValueSet, b: &Budget) -> bool {
    any_hit(doc, segs, true, b, &mut |h| in_single(h, vs, b))
}

/// `$all`: every class of the list is equal to some value the path reaches. One walk over the
/// values, each looked up once, rather than one walk per listed value.
fn all_path(doc: &Value, segs: &[String], vs: &ValueSet, b: &Budget) -> bool {
    let classes = vs.classes();
    if classes == 0 {
        return false;
    }
    let mut found = vec![false; classes];
    let mut missing = classes;
    any_hit(doc, segs, true, b, &mut |h| {
        let mut compared = 0;
        let class = vs.class_of(h, &mut compared);
        if !b.spend(compared) {
            return false;
        }
        if let Some(c) = class
            && !found[c]
        {
            found[c] = true;
            missing -= 1;
        }
        missing == 0
    })
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
/// "missing"; returns true as soon as `f` does. Each value reached and each array element passed
/// costs one comparison of `b`; once `b` is exhausted it stops, answering false.
pub(crate) fn any_hit(
    v: &Value,
    segs: &[String],
    expand: bool,
    b: &Budget,
    f: &mut dyn FnMut(Option<&Value>) -> bool,
) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        if b.spend(1) && f(Some(v)) {
            return true;
        }
        if expand && let Value::Array(items) = v {
            return items.iter().any(|e| b.spend(1) && f(Some(e)));
        }
        return false;
    };
    match v {
        Value::Object(map) => match map.get(first) {
            Some(child) => any_hit(child, rest, expand, b, f),
            None => b.spend(1) && f(None),
        },
        Value::Array(items) => {
            let index = Path::index(first);
            for (i, e) in items.iter().enumerate() {
                if !b.spend(1) {
                    return false;
                }
                let hit = if index == Some(i) {
                    // The element at that position, continued with the rest of the path.
                    if rest.is_empty() || e.is_object() || e.is_array() {
                        any_hit(e, rest, expand, b, f)
                    } else {
                        false
                    }
                } else if e.is_object() {
                    any_hit(e, segs, expand, b, f)
                } else {
                    false
                };
                if hit {
                    return true;
                }
            }
            false
        }
        _ => b.spend(1) && f(None),
    }
}
