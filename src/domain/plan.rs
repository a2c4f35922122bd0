//! How a query reads the store: through the tag index (and the name index, `domain::words`), or by
//! scanning every entry. A name condition the name index answers is a [`TagSet::Word`] beside the
//! tags, combined through the same union and intersection; a store without that index leaves it
//! out ([`TagSet::tags_only`]).
//!
//! Both stores keep a tag index: one key `(tag, id)` per tag an entry carries, written atomically
//! with the entry. A filter that names `container_registry_tags` with a condition the index can
//! answer (`$eq`/implicit equality with a string, `$in` of strings, `$all` of strings), alone or
//! inside `$and`/`$or`, gets a [`TagPlan`]: a union or intersection of the entries that carry given
//! tags, which holds every entry the filter matches (it may hold more: the caller still evaluates the
//! whole filter, unless the plan is [`TagPlan::exact`]).
//!
//! Entries come out of a plan in id order, the order the embedded store scans in, so a cursor is
//! still "the last id examined". [`merge`] turns per-tag id lists, each read from one position
//! onwards, into the ids the plan selects up to the point every list has reached (the horizon):
//! stores read the index in chunks and call it once per chunk, holding no state between chunks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::domain::entry::{MAX_TAG_CHARS, NAME, TAGS};
use crate::domain::words;
use crate::query::{Cond, FieldFilter, Filter};

/// One list an index holds: the entries carrying a tag, or those whose name has a word beginning
/// with a prefix (the name index, `domain::words`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Term {
    Tag(String),
    Word(String),
}

/// A set of entries described by the tags they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagSet {
    /// Entries that carry this tag.
    Tag(String),
    /// Entries whose name has a word beginning with this prefix (a key of the name index).
    Word(String),
    /// Entries in any of these sets (never empty).
    Union(Vec<TagSet>),
    /// Entries in all of these sets (never empty).
    Intersect(Vec<TagSet>),
}

/// A plan for a filter the tag index can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPlan {
    /// A superset of the entries the filter matches.
    pub set: TagSet,
    /// True when `set` is exactly the entries the filter matches: a store whose index is written in
    /// the same transaction as its entries may skip evaluating the filter.
    pub exact: bool,
}

/// How a query reads the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Examine every entry, in the store's key order.
    Scan,
    /// Examine only the entries the tag index selects, in id order.
    Tags(TagPlan),
}

impl Plan {
    /// The plan for `filter`: the tag index when it can answer part of it, else a scan.
    pub fn for_filter(filter: &Filter) -> Plan {
        match tag_plan(filter) {
            Some(plan) => Plan::Tags(plan),
            None => Plan::Scan,
        }
    }

    pub fn uses_index(&self) -> bool {
        matches!(self, Plan::Tags(_))
    }
}

impl TagSet {
    /// Every list the set names, each once, in order (the index lists a store must read).
    pub fn terms(&self) -> Vec<Term> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out.into_iter().collect()
    }

    fn collect(&self, out: &mut BTreeSet<Term>) {
        match self {
            TagSet::Tag(t) => {
                out.insert(Term::Tag(t.clone()));
            }
            TagSet::Word(w) => {
                out.insert(Term::Word(w.clone()));
            }
            TagSet::Union(sets) | TagSet::Intersect(sets) => {
                sets.iter().for_each(|s| s.collect(out))
            }
        }
    }

    /// Whether an entry in exactly the lists `holds` says is in the set.
    pub fn contains(&self, holds: &dyn Fn(&Term) -> bool) -> bool {
        match self {
            TagSet::Tag(t) => holds(&Term::Tag(t.clone())),
            TagSet::Word(w) => holds(&Term::Word(w.clone())),
            TagSet::Union(sets) => sets.iter().any(|s| s.contains(holds)),
            TagSet::Intersect(sets) => sets.iter().all(|s| s.contains(holds)),
        }
    }

    /// The set with its name-index parts left out, for a store that keeps no name index: still a
    /// superset of the filter's matches (a part of an intersection dropped, a union with such a
    /// part not narrowed at all: `None`).
    pub fn tags_only(&self) -> Option<TagSet> {
        match self {
            TagSet::Tag(_) => Some(self.clone()),
            TagSet::Word(_) => None,
            TagSet::Union(sets) => sets
                .iter()
                .map(TagSet::tags_only)
                .collect::<Option<Vec<_>>>()
                .map(TagSet::Union),
            TagSet::Intersect(sets) => {
                let mut kept: Vec<TagSet> = sets.iter().filter_map(TagSet::tags_only).collect();
                match kept.len() {
                    0 => None,
                    1 => kept.pop(),
                    _ => Some(TagSet::Intersect(kept)),
                }
            }
        }
    }
}

/// The plan for `filter`, or `None` when the tag index cannot narrow it.
fn tag_plan(filter: &Filter) -> Option<TagPlan> {
    match filter {
        Filter::Field(field) => field_plan(field),
        Filter::And(children) => {
            // Every part must hold: intersect what the index can answer; the rest is evaluated.
            let mut exact = true;
            let mut sets = Vec::new();
            for child in children {
                match tag_plan(child) {
                    Some(plan) => {
                        exact &= plan.exact;
                        sets.push(plan.set);
                    }
                    None => exact = false,
                }
            }
            let set = match sets.len() {
                0 => return None,
                1 => sets.pop()?,
                _ => TagSet::Intersect(sets),
            };
            Some(TagPlan { set, exact })
        }
        Filter::Or(children) => {
            // Some part holds: only when the index can answer every part does it bound the union.
            let plans = children.iter().map(tag_plan).collect::<Option<Vec<_>>>()?;
            let exact = plans.iter().all(|p| p.exact);
            let mut sets: Vec<TagSet> = plans.into_iter().map(|p| p.set).collect();
            let set = match sets.len() {
                0 => return None,
                1 => sets.pop()?,
                _ => TagSet::Union(sets),
            };
            Some(TagPlan { set, exact })
        }
        Filter::Nor(_) => None,
    }
}

/// Tag values the index can look up: strings. A string no tag can be (empty, too long) selects
/// nothing, which is still exact.
fn tag_value(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn field_plan(field: &FieldFilter) -> Option<TagPlan> {
    if field.path.segments() == [NAME] {
        return word_plan(&field.cond);
    }
    if field.path.segments() != [TAGS] {
        return None;
    }
    // Entries hold tags as an array of strings (validation guarantees it), so "the array contains
    // the string" is the whole meaning of equality with a string here, and the plan is exact.
    let set = match &field.cond {
        Cond::Eq(v) => TagSet::Tag(tag_value(v)?),
        Cond::In(values) if !values.is_empty() => {
            let tags = values.iter().map(tag_value).collect::<Option<Vec<_>>>()?;
            union(tags)
        }
        Cond::All(values) if !values.is_empty() => {
            let tags = values.iter().map(tag_value).collect::<Option<Vec<_>>>()?;
            let mut sets: Vec<TagSet> = dedup(tags).into_iter().map(TagSet::Tag).collect();
            if sets.len() == 1 {
                sets.pop()?
            } else {
                TagSet::Intersect(sets)
            }
        }
        _ => return None,
    };
    Some(TagPlan { set, exact: true })
}

/// A name condition the name index answers: the regex of [`words::word_pattern`], exactly for a
/// term the index holds whole, as a superset for a longer one.
fn word_plan(cond: &Cond) -> Option<TagPlan> {
    let Cond::Regex(regex) = cond else {
        return None;
    };
    let term = words::term_of(regex.pattern(), regex.options())?;
    let (key, exact) = words::lookup_key(term);
    Some(TagPlan {
        set: TagSet::Word(key),
        exact,
    })
}

fn dedup(tags: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    tags.into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

fn union(tags: Vec<String>) -> TagSet {
    let mut sets: Vec<TagSet> = dedup(tags).into_iter().map(TagSet::Tag).collect();
    if sets.len() == 1 {
        sets.pop().expect("one set")
    } else {
        TagSet::Union(sets)
    }
}

/// Whether `tag` could be stored at all (1 to [`MAX_TAG_CHARS`] characters): a store need not read
/// the index for a tag no entry can carry.
pub fn storable_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.chars().count() <= MAX_TAG_CHARS
}

/// The ids of one tag's index list read from one position onwards, in ascending order: owned
/// (`String`, as DynamoDB answers them) or borrowed from a list the store holds (`&str`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posting<I = String> {
    pub ids: Vec<I>,
    /// True when the list was read to its end; otherwise `ids` is a prefix of what follows.
    pub complete: bool,
}

/// What [`merge`] selected from one chunk of postings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged<I = String> {
    /// The ids the set selects, ascending, all at most `horizon`.
    pub ids: Vec<I>,
    /// The greatest id up to which every list has been read: resume after it. `None` when every
    /// list was read to its end (the plan is exhausted).
    pub horizon: Option<String>,
}

/// Evaluates `set` over postings read from the same position, one per tag of [`TagSet::tags`].
///
/// Every incomplete posting must hold at least one id (a store keeps reading a list until it gets
/// an id or reaches its end), or the horizon would pass ids that list has not reached yet.
pub fn merge<I: AsRef<str> + Clone>(
    set: &TagSet,
    mut postings: BTreeMap<Term, Posting<I>>,
) -> Merged<I> {
    debug_assert!(postings.values().all(|p| p.complete || !p.ids.is_empty()));
    // Ids beyond the shortest incomplete list are not known for every tag yet.
    let horizon = postings
        .values()
        .filter(|p| !p.complete)
        .filter_map(|p| p.ids.last().map(|id| id.as_ref()))
        .min()
        .map(str::to_owned);
    // One tag (the common case): its list, in order, is the answer; every id in it is within
    // its own horizon.
    if let TagSet::Tag(_) | TagSet::Word(_) = set {
        let ids = set
            .terms()
            .first()
            .and_then(|term| postings.remove(term))
            .map(|p| p.ids)
            .unwrap_or_default();
        return Merged { ids, horizon };
    }
    let mut candidates: Vec<&I> = postings
        .values()
        .flat_map(|p| &p.ids)
        .filter(|id| horizon.as_deref().is_none_or(|h| id.as_ref() <= h))
        .collect();
    candidates.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    candidates.dedup_by(|a, b| a.as_ref() == b.as_ref());
    let carries = |id: &str, term: &Term| {
        postings
            .get(term)
            .is_some_and(|p| p.ids.binary_search_by(|x| x.as_ref().cmp(id)).is_ok())
    };
    let ids = candidates
        .into_iter()
        .filter(|id| set.contains(&|term| carries(id.as_ref(), term)))
        .cloned()
        .collect();
    Merged { ids, horizon }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(f: Value) -> Plan {
        Plan::for_filter(&Filter::parse(&f).unwrap())
    }

    fn tag(t: &str) -> TagSet {
        TagSet::Tag(t.into())
    }

    #[test]
    fn indexable_tag_conditions() {
        let cases = [
            (
                json!({"container_registry_tags": "ai"}),
                Some((tag("ai"), true)),
            ),
            (
                json!({"container_registry_tags": {"$eq": "ai"}}),
                Some((tag("ai"), true)),
            ),
            (
                json!({"container_registry_tags": {"$in": ["ai", "gpu", "ai"]}}),
                Some((TagSet::Union(vec![tag("ai"), tag("gpu")]), true)),
            ),
            (
                json!({"container_registry_tags": {"$all": ["ai", "gpu"]}}),
                Some((TagSet::Intersect(vec![tag("ai"), tag("gpu")]), true)),
            ),
            (
                json!({"container_registry_tags": "ai", "container_registry_name": "x"}),
                Some((tag("ai"), false)),
            ),
            (
                json!({"$or": [{"container_registry_tags": "a"}, {"container_registry_tags": "b"}]}),
                Some((TagSet::Union(vec![tag("a"), tag("b")]), true)),
            ),
            (
                json!({"$and": [{"container_registry_tags": "a"}, {"$or": [{"container_registry_tags": "b"}, {"container_registry_tags": "c"}]}]}),
                Some((
                    TagSet::Intersect(vec![tag("a"), TagSet::Union(vec![tag("b"), tag("c")])]),
                    true,
                )),
            ),
        ];
        for (f, want) in cases {
            let got = match plan(f.clone()) {
                Plan::Tags(p) => Some((p.set, p.exact)),
                Plan::Scan => None,
            };
            assert_eq!(got, want, "{f}");
        }
    }

    #[test]
    fn word_searches_of_the_name_use_the_name_index() {
        let w = |t: &str| json!({"container_registry_name": {"$regex": words::word_pattern(t), "$options": "i"}});
        let got = |f: Value| match plan(f) {
            Plan::Tags(p) => Some((p.set, p.exact)),
            Plan::Scan => None,
        };
        assert_eq!(got(w("reg")), Some((TagSet::Word("reg".into()), true)));
        // Past the prefix bound: the prefix's list, evaluated.
        assert_eq!(
            got(w("registrations1")),
            Some((TagSet::Word("registration".into()), false))
        );
        let both = json!({"$and": [w("reg"), {"container_registry_tags": "gpu"}]});
        assert_eq!(
            got(both),
            Some((
                TagSet::Intersect(vec![TagSet::Word("reg".into()), tag("gpu")]),
                true
            ))
        );
        // Any other regex of the name, or this one without `i`, is evaluated on every entry.
        for f in [
            json!({"container_registry_name": {"$regex": "reg"}}),
            json!({"container_registry_name": {"$regex": words::word_pattern("reg")}}),
        ] {
            assert_eq!(got(f), None);
        }
        // A store without the name index drops those parts, keeping a superset.
        let set = TagSet::Intersect(vec![TagSet::Word("reg".into()), tag("gpu")]);
        assert_eq!(set.tags_only(), Some(tag("gpu")));
        assert_eq!(
            TagSet::Union(vec![TagSet::Word("r".into()), tag("gpu")]).tags_only(),
            None
        );
    }

    #[test]
    fn conditions_the_index_cannot_answer_scan() {
        for f in [
            json!({}),
            json!({"container_registry_tags": {"$ne": "ai"}}),
            json!({"container_registry_tags": {"$nin": ["ai"]}}),
            json!({"container_registry_tags": {"$in": ["ai", null]}}),
            json!({"container_registry_tags": {"$in": []}}),
            json!({"container_registry_tags": {"$all": []}}),
            json!({"container_registry_tags": ["ai"]}),
            json!({"container_registry_tags": {"$regex": "^a"}}),
            json!({"container_registry_tags": {"$size": 1}}),
            json!({"container_registry_tags.0": "ai"}),
            json!({"container_registry_tags": {"$not": {"$eq": "ai"}}}),
            json!({"$or": [{"container_registry_tags": "a"}, {"container_registry_name": "b"}]}),
            json!({"$nor": [{"container_registry_tags": "a"}]}),
        ] {
            assert_eq!(plan(f.clone()), Plan::Scan, "{f}");
        }
    }

    fn posting(ids: &[&str], complete: bool) -> Posting {
        Posting {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            complete,
        }
    }

    #[test]
    fn merge_stops_at_the_shortest_incomplete_list() {
        let set = TagSet::Union(vec![tag("a"), tag("b")]);
        let postings = BTreeMap::from([
            (Term::Tag("a".to_string()), posting(&["1", "3", "5"], false)),
            (
                Term::Tag("b".to_string()),
                posting(&["2", "4", "6", "8"], true),
            ),
        ]);
        let m = merge(&set, postings);
        assert_eq!(m.ids, ["1", "2", "3", "4", "5"]);
        assert_eq!(m.horizon.as_deref(), Some("5"));

        let set = TagSet::Intersect(vec![tag("a"), tag("b")]);
        let postings = BTreeMap::from([
            (
                Term::Tag("a".to_string()),
                posting(&["1", "3", "5", "7"], true),
            ),
            (Term::Tag("b".to_string()), posting(&["3", "4", "7"], true)),
        ]);
        let m = merge(&set, postings);
        assert_eq!(m.ids, ["3", "7"]);
        assert_eq!(m.horizon, None);
    }

    #[test]
    fn one_tag_is_its_own_list() {
        for complete in [false, true] {
            let postings = BTreeMap::from([(
                Term::Tag("a".to_string()),
                posting(&["1", "3", "5"], complete),
            )]);
            let m = merge(&tag("a"), postings);
            assert_eq!(m.ids, ["1", "3", "5"]);
            assert_eq!(m.horizon.as_deref(), (!complete).then_some("5"));
        }
    }
}
