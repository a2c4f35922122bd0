//! The update tree, its parser and its application to a document.

use serde_json::{Map, Value};

use super::eval::Budget;
use super::filter::{Cond, Filter, parse_doc, parse_ops};
use super::limits::{
    MAX_ARRAY_BACKFILL, MAX_IN_VALUES, MAX_UPDATE_DEPTH, MAX_UPDATE_NODES, MAX_UPDATE_PATHS,
    check_size,
};
use super::path::Path;
use super::value::values_equal;
use super::{QueryError, type_name};

/// A parsed update: operations on paths of which none equals or prefixes another.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Sorted by path segment by segment, the order MongoDB applies them in.
    ops: Vec<UpdateOp>,
}

/// One operation of an update.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOp {
    /// `$set` (or a field of a plain-object update): missing intermediate objects are created.
    Set { path: Path, value: Value },
    /// `$unset`: removes the field; a missing field is fine.
    Unset { path: Path },
    /// `$addToSet` (with or without `$each`): appends the values not already present.
    AddToSet { path: Path, values: Vec<Value> },
    /// `$push` (with or without `$each`): appends the values.
    Push { path: Path, values: Vec<Value> },
    /// `$pull`: removes the matching elements.
    Pull { path: Path, cond: PullCond },
}

/// Which elements `$pull` removes, as MongoDB decides it.
#[derive(Debug, Clone, PartialEq)]
pub enum PullCond {
    /// `{"$pull": {"f": v}}` with a scalar or array `v`: elements equal to `v`.
    Equals(Value),
    /// `{"$pull": {"f": {"$in": [...]}}}` or any operator object: elements for which the
    /// operators hold, an array element being searched as a query value would be.
    Matches(Vec<Cond>),
    /// `{"$pull": {"f": {"k": 1}}}`: object elements that match this filter (MongoDB applies the
    /// object as a query to each element, so elements with extra keys are removed too).
    Query(Box<Filter>),
}

impl UpdateOp {
    /// The path the operation writes.
    pub fn path(&self) -> &Path {
        match self {
            UpdateOp::Set { path, .. }
            | UpdateOp::Unset { path }
            | UpdateOp::AddToSet { path, .. }
            | UpdateOp::Push { path, .. }
            | UpdateOp::Pull { path, .. } => path,
        }
    }

    /// The operator's name, for messages.
    pub fn operator(&self) -> &'static str {
        match self {
            UpdateOp::Set { .. } => "$set",
            UpdateOp::Unset { .. } => "$unset",
            UpdateOp::AddToSet { .. } => "$addToSet",
            UpdateOp::Push { .. } => "$push",
            UpdateOp::Pull { .. } => "$pull",
        }
    }
}

fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::InvalidUpdate(msg.into())
}

impl Update {
    /// Parses an update: an object of operators (`$set $unset $addToSet $pull $push`) or a plain
    /// object (a `$set` of those top-level fields). Errors name the construct and the reason.
    pub fn parse(json: &Value) -> Result<Update, QueryError> {
        let Value::Object(map) = json else {
            return Err(invalid(format!(
                "an update must be a JSON object, not {}",
                type_name(json)
            )));
        };
        check_size(json, MAX_UPDATE_DEPTH, MAX_UPDATE_NODES, "update").map_err(invalid)?;
        if map.is_empty() {
            return Err(invalid(
                "the update is empty; send the fields to change, or operators such as \
                 {\"$set\": {...}}",
            ));
        }
        let operators = map.keys().filter(|k| k.starts_with('$')).count();
        let mut ops = Vec::new();
        if operators == 0 {
            for (key, value) in map {
                if key.contains('.') {
                    return Err(invalid(format!(
                        "the plain-object update names '{key}', which contains a dot; a plain \
                         object sets top-level fields, use {{\"$set\": {{\"{key}\": ...}}}} for a \
                         nested path"
                    )));
                }
                let path = Path::parse(key).map_err(invalid)?;
                ops.push(UpdateOp::Set {
                    path,
                    value: value.clone(),
                });
            }
        } else if operators != map.len() {
            return Err(invalid(format!(
                "the update mixes operators ({}) with plain fields ({}); use either operators or \
                 a plain object",
                map.keys()
                    .filter(|k| k.starts_with('$'))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                map.keys()
                    .filter(|k| !k.starts_with('$'))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        } else {
            for (op, arg) in map {
                parse_operator(op, arg, &mut ops)?;
            }
        }
        if ops.len() > MAX_UPDATE_PATHS {
            return Err(invalid(format!(
                "the update touches more than {MAX_UPDATE_PATHS} paths"
            )));
        }
        // Sorted segment by segment, a path comes right before the paths it prefixes, so every
        // conflict shows between neighbours.
        ops.sort_by(|a, b| a.path().segments().cmp(b.path().segments()));
        for pair in ops.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.path().segments().starts_with(a.path().segments()) {
                return Err(QueryError::UpdateConflict(if a.path() == b.path() {
                    format!(
                        "{} and {} both change '{}'; an update may touch each path once",
                        a.operator(),
                        b.operator(),
                        a.path()
                    )
                } else {
                    format!(
                        "{} of '{}' conflicts with {} of '{}', which contains it; an update may \
                         not touch a path and its prefix",
                        b.operator(),
                        b.path(),
                        a.operator(),
                        a.path()
                    )
                }));
            }
        }
        Ok(Update { ops })
    }

    /// The operations, in the order they apply.
    pub fn ops(&self) -> &[UpdateOp] {
        &self.ops
    }

    /// Every path the update writes (dotted, as the client wrote them).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().map(|op| op.path().as_str())
    }

    /// Applies the update to `doc` (an object), all or nothing: on `Err`, `doc` is unchanged.
    pub fn apply(&self, doc: &mut Value) -> Result<(), QueryError> {
        self.apply_within(doc, usize::MAX)
    }

    /// [`Update::apply`], refusing (before making them) to create more than `max_created` values
    /// that the update does not hold itself: the nulls that pad an array up to a `$set` index and
    /// the objects made for missing intermediate fields. They all stay in the result, so an entry
    /// allowed at most `max_created` values in all could never hold them: 1,000 paths padding
    /// 1,000 nulls each are refused at the 10,001st, not built (a million values) and then refused.
    pub fn apply_within(&self, doc: &mut Value, max_created: usize) -> Result<(), QueryError> {
        let Value::Object(fields) = doc else {
            return Err(invalid(format!(
                "cannot update {}, only an object",
                type_name(doc)
            )));
        };
        // Work on copies of the top-level fields the update touches (and only those: the rest
        // may be large), then write them back, so that a failure leaves `doc` as it was.
        let mut work = Map::new();
        for op in &self.ops {
            let top = &op.path().segments()[0];
            if let Some(v) = fields.get(top)
                && !work.contains_key(top)
            {
                work.insert(top.clone(), v.clone());
            }
        }
        let mut work = Value::Object(work);
        let mut growth = Growth {
            created: 0,
            max: max_created,
        };
        for op in &self.ops {
            apply_op(op, &mut work, &mut growth)?;
        }
        let Value::Object(work) = work else {
            unreachable!("apply_op keeps the root an object")
        };
        for op in &self.ops {
            let top = &op.path().segments()[0];
            if !work.contains_key(top) {
                fields.shift_remove(top);
            }
        }
        for (k, v) in work {
            // `insert` keeps the position of an existing key; new keys go last.
            fields.insert(k, v);
        }
        Ok(())
    }
}

fn parse_operator(op: &str, arg: &Value, ops: &mut Vec<UpdateOp>) -> Result<(), QueryError> {
    if !matches!(op, "$set" | "$unset" | "$addToSet" | "$push" | "$pull") {
        return Err(invalid(format!(
            "the update operator {op} is not supported; supported operators are $set, $unset, \
             $addToSet, $push and $pull"
        )));
    }
    let Value::Object(fields) = arg else {
        return Err(invalid(format!(
            "{op} needs an object of paths, as in {{\"{op}\": {{\"field\": ...}}}}, not {}",
            type_name(arg)
        )));
    };
    if fields.is_empty() {
        return Err(invalid(format!("{op} names no field")));
    }
    for (key, value) in fields {
        let path = Path::parse(key).map_err(|e| invalid(format!("{e} (in {op})")))?;
        ops.push(match op {
            "$set" => UpdateOp::Set {
                path,
                value: value.clone(),
            },
            "$unset" => UpdateOp::Unset { path },
            "$addToSet" => UpdateOp::AddToSet {
                values: each(op, &path, value)?,
                path,
            },
            "$push" => UpdateOp::Push {
                values: each(op, &path, value)?,
                path,
            },
            _ => UpdateOp::Pull {
                cond: pull_cond(&path, value)?,
                path,
            },
        });
    }
    Ok(())
}

/// `v` or `{"$each": [v, ...]}`.
fn each(op: &str, path: &Path, value: &Value) -> Result<Vec<Value>, QueryError> {
    let Value::Object(map) = value else {
        return Ok(vec![value.clone()]);
    };
    let Some(dollar) = map.keys().find(|k| k.starts_with('$')) else {
        return Ok(vec![value.clone()]);
    };
    if dollar != "$each" || map.len() != 1 {
        let other = map
            .keys()
            .find(|k| k.as_str() != "$each")
            .cloned()
            .unwrap_or_default();
        return Err(invalid(format!(
            "{op} on '{path}' supports only the modifier $each, alone; found {other}"
        )));
    }
    match &map["$each"] {
        Value::Array(items) if items.len() <= MAX_IN_VALUES => Ok(items.clone()),
        Value::Array(_) => Err(invalid(format!(
            "$each in {op} on '{path}' lists more than {MAX_IN_VALUES} values"
        ))),
        other => Err(invalid(format!(
            "$each in {op} on '{path}' needs an array, not {}",
            type_name(other)
        ))),
    }
}

fn pull_cond(path: &Path, value: &Value) -> Result<PullCond, QueryError> {
    let Value::Object(map) = value else {
        return Ok(PullCond::Equals(value.clone()));
    };
    let what = format!("$pull on '{path}'");
    let dollar = map.keys().filter(|k| k.starts_with('$')).count();
    let logical = map
        .keys()
        .any(|k| matches!(k.as_str(), "$and" | "$or" | "$nor"));
    if dollar > 0 && !logical {
        if dollar != map.len() {
            return Err(invalid(format!("{what} mixes operators with plain fields")));
        }
        let conds =
            parse_ops(map, path.as_str()).map_err(|e| invalid(format!("{e} (in $pull)")))?;
        return Ok(PullCond::Matches(conds));
    }
    let filter = parse_doc(value, &format!("the condition of {what}"))
        .map_err(|e| invalid(format!("{e} (in $pull)")))?;
    Ok(PullCond::Query(Box::new(filter)))
}

impl PullCond {
    fn removes(&self, element: &Value) -> bool {
        match self {
            PullCond::Equals(v) => values_equal(element, v),
            PullCond::Matches(conds) => {
                // Bounded by the entry's size and the update's, as applying the update is.
                let b = Budget::unlimited();
                conds.iter().all(|c| c.matches_path(element, &[], &b))
            }
            PullCond::Query(f) => element.is_object() && f.matches(element),
        }
    }
}

/// Where the walk to a path's parent ended.
enum Parent<'a> {
    Found(&'a mut Value),
    /// Some intermediate is missing (or not a container), and the operator does not create.
    Absent,
}

/// The values an update has created beyond its own (see [`Update::apply_within`]).
struct Growth {
    created: usize,
    max: usize,
}

impl Growth {
    /// Counts `n` more, or refuses them.
    fn create(&mut self, n: usize, op: &UpdateOp, path: &Path) -> Result<(), QueryError> {
        self.created = self.created.saturating_add(n);
        if self.created > self.max {
            return Err(QueryError::TooLarge(format!(
                "{} of '{path}' would bring the nulls padding arrays and the objects made for \
                 missing fields to more than {} JSON values, the most an entry may hold",
                op.operator(),
                self.max
            )));
        }
        Ok(())
    }
}

fn apply_op(op: &UpdateOp, doc: &mut Value, growth: &mut Growth) -> Result<(), QueryError> {
    let path = op.path();
    let (last, init) = path.segments().split_last().expect("a path has a segment");
    let create = !matches!(op, UpdateOp::Unset { .. } | UpdateOp::Pull { .. });
    let parent = match walk(doc, init, create, op, path, growth)? {
        Parent::Found(p) => p,
        Parent::Absent => return Ok(()),
    };
    match op {
        UpdateOp::Set { value, .. } => {
            *slot(parent, last, op, path, growth)?.0 = value.clone();
        }
        UpdateOp::Unset { .. } => match parent {
            Value::Object(m) => {
                m.shift_remove(last);
            }
            // MongoDB's $unset of an array element leaves a null in its place.
            Value::Array(a) => {
                if let Some(e) = Path::index(last).and_then(|i| a.get_mut(i)) {
                    *e = Value::Null;
                }
            }
            _ => {}
        },
        UpdateOp::AddToSet { values, .. } | UpdateOp::Push { values, .. } => {
            let (target, created) = slot(parent, last, op, path, growth)?;
            if created {
                *target = Value::Array(Vec::new());
            }
            let Value::Array(items) = target else {
                return Err(invalid(format!(
                    "{} needs an array at '{path}', but the entry holds {} there",
                    op.operator(),
                    type_name(target)
                )));
            };
            for v in values {
                if matches!(op, UpdateOp::Push { .. }) || !items.iter().any(|e| values_equal(e, v))
                {
                    items.push(v.clone());
                }
            }
        }
        UpdateOp::Pull { cond, .. } => {
            let target = match parent {
                Value::Object(m) => m.get_mut(last),
                Value::Array(a) => Path::index(last).and_then(|i| a.get_mut(i)),
                _ => None,
            };
            match target {
                None => {}
                Some(Value::Array(items)) => items.retain(|e| !cond.removes(e)),
                Some(other) => {
                    return Err(invalid(format!(
                        "$pull needs an array at '{path}', but the entry holds {} there",
                        type_name(other)
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The slot for the last segment under `parent`, created (as null) when missing; the flag says
/// whether it was created.
fn slot<'a>(
    parent: &'a mut Value,
    last: &str,
    op: &UpdateOp,
    path: &Path,
    growth: &mut Growth,
) -> Result<(&'a mut Value, bool), QueryError> {
    match parent {
        Value::Object(m) => {
            let created = !m.contains_key(last);
            if created {
                m.insert(last.to_string(), Value::Null);
            }
            Ok((m.get_mut(last).expect("present"), created))
        }
        Value::Array(a) => {
            let Some(i) = Path::index(last) else {
                return Err(cannot_create(op, path, last, "an array"));
            };
            let created = i >= a.len();
            if created {
                backfill(a, i, op, path, growth)?;
            }
            Ok((&mut a[i], created))
        }
        other => Err(cannot_create(op, path, last, type_name(other))),
    }
}

fn backfill(
    a: &mut Vec<Value>,
    i: usize,
    op: &UpdateOp,
    path: &Path,
    growth: &mut Growth,
) -> Result<(), QueryError> {
    if i - a.len() > MAX_ARRAY_BACKFILL {
        return Err(invalid(format!(
            "{} of '{path}' would pad an array of {} elements with {} nulls; at most \
             {MAX_ARRAY_BACKFILL} are allowed",
            op.operator(),
            a.len(),
            i - a.len()
        )));
    }
    // The padding, not the slot itself, which the operation fills.
    growth.create(i - a.len(), op, path)?;
    a.resize(i + 1, Value::Null);
    Ok(())
}

fn cannot_create(op: &UpdateOp, path: &Path, segment: &str, holder: &str) -> QueryError {
    invalid(format!(
        "{} of '{path}' cannot create the field '{segment}' inside {holder}",
        op.operator()
    ))
}

/// Walks to the parent of the last segment, creating missing objects when `create`.
fn walk<'a>(
    doc: &'a mut Value,
    init: &[String],
    create: bool,
    op: &UpdateOp,
    path: &Path,
    growth: &mut Growth,
) -> Result<Parent<'a>, QueryError> {
    let mut cur = doc;
    for seg in init {
        cur = match cur {
            Value::Object(m) => {
                if !m.contains_key(seg.as_str()) {
                    if !create {
                        return Ok(Parent::Absent);
                    }
                    growth.create(1, op, path)?;
                    m.insert(seg.clone(), Value::Object(Map::new()));
                }
                m.get_mut(seg.as_str()).expect("present")
            }
            Value::Array(a) => {
                let Some(i) = Path::index(seg) else {
                    if !create {
                        return Ok(Parent::Absent);
                    }
                    return Err(cannot_create(op, path, seg, "an array"));
                };
                if i >= a.len() {
                    if !create {
                        return Ok(Parent::Absent);
                    }
                    backfill(a, i, op, path, growth)?;
                    growth.create(1, op, path)?;
                    a[i] = Value::Object(Map::new());
                }
                &mut a[i]
            }
            other => {
                if !create {
                    return Ok(Parent::Absent);
                }
                return Err(cannot_create(op, path, seg, type_name(other)));
            }
        };
    }
    Ok(Parent::Found(cur))
}
