//! The filter tree and its parser.

use serde_json::{Map, Value};

use super::limits::{
    MAX_FILTER_DEPTH, MAX_FILTER_NODES, MAX_IN_VALUES, MAX_REGEX_LEN, REGEX_SIZE_LIMIT, check_size,
};
use super::path::{Path, truncate};
use super::value::ValueSet;
use super::{QueryError, type_name};

/// A parsed filter. `{}` is `And(vec![])`, which matches everything.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every child holds (the top-level entries of a filter object, `$and`, several operators on
    /// one path).
    And(Vec<Filter>),
    /// Some child holds (`$or`, never empty once parsed).
    Or(Vec<Filter>),
    /// No child holds (`$nor`, never empty once parsed).
    Nor(Vec<Filter>),
    /// One condition on one path.
    Field(FieldFilter),
}

/// One condition on the values a path reaches.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldFilter {
    pub path: Path,
    pub cond: Cond,
}

/// A condition on the values a path reaches, with MongoDB's semantics (see `QUERY.md`).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `{"f": v}` or `{"f": {"$eq": v}}`; with `null`, also matches a missing field.
    Eq(Value),
    /// Exactly `NOT Eq`.
    Ne(Value),
    /// `$gt`; the argument is a number, string, boolean or null.
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    /// Any listed value is `Eq`.
    In(ValueSet),
    /// Exactly `NOT In`.
    Nin(ValueSet),
    /// `$exists`: whether the path reaches a value (a null is a value).
    Exists(bool),
    /// Every listed value is `Eq` (an empty list matches nothing).
    All(ValueSet),
    /// The path reaches an array of this length.
    Size(u64),
    /// `$regex` with `$options`, over strings and string elements of arrays.
    Regex(RegexCond),
    /// `$not`: the conjunction of these conditions does not hold.
    Not(Vec<Cond>),
    /// `$elemMatch`: the path reaches an array with an element that matches.
    ElemMatch(ElemMatch),
}

/// The two forms of `$elemMatch`.
#[derive(Debug, Clone, PartialEq)]
pub enum ElemMatch {
    /// `{"$elemMatch": {"$gte": 1, "$lt": 5}}`: one element satisfies every condition by itself.
    Value(Vec<Cond>),
    /// `{"$elemMatch": {"k": 1, "n": {"$gt": 2}}}`: one element is an object matching the filter.
    Doc(Box<Filter>),
}

/// A compiled `$regex` with its `$options` (a subset of `imsx`).
#[derive(Debug, Clone)]
pub struct RegexCond {
    pattern: String,
    options: String,
    regex: regex::Regex,
}

impl PartialEq for RegexCond {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.options == other.options
    }
}

impl RegexCond {
    /// Compiles a pattern with MongoDB-style options; `Err` is the reason.
    pub(crate) fn new(pattern: &str, options: &str) -> Result<RegexCond, String> {
        if pattern.len() > MAX_REGEX_LEN {
            return Err(format!(
                "the $regex pattern is longer than {MAX_REGEX_LEN} bytes"
            ));
        }
        for c in options.chars() {
            if !matches!(c, 'i' | 'm' | 's' | 'x') {
                return Err(format!(
                    "$options '{options}' contains '{c}'; only the options i, m, s and x are supported"
                ));
            }
        }
        let regex = regex::RegexBuilder::new(pattern)
            .case_insensitive(options.contains('i'))
            .multi_line(options.contains('m'))
            .dot_matches_new_line(options.contains('s'))
            .ignore_whitespace(options.contains('x'))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(100)
            .build()
            .map_err(|e| {
                let detail = match &e {
                    regex::Error::CompiledTooBig(_) => {
                        "it compiles to more than the allowed size".to_string()
                    }
                    other => other.to_string(),
                };
                format!(
                    "the $regex pattern '{}' is invalid: {detail}",
                    truncate(pattern, 80)
                )
            })?;
        Ok(RegexCond {
            pattern: pattern.to_string(),
            options: options.to_string(),
            regex,
        })
    }

    /// The pattern as the client wrote it.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The options as the client wrote them (possibly empty).
    pub fn options(&self) -> &str {
        &self.options
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl Filter {
    /// The `{}` filter, which matches every document.
    pub fn match_all() -> Filter {
        Filter::And(Vec::new())
    }

    /// Parses a filter document (see `QUERY.md`). Errors name the construct and the reason.
    pub fn parse(json: &Value) -> Result<Filter, QueryError> {
        check_size(json, MAX_FILTER_DEPTH, MAX_FILTER_NODES, "filter")
            .map_err(QueryError::InvalidFilter)?;
        parse_doc(json, "the filter").map_err(QueryError::InvalidFilter)
    }
}

/// Parses a filter object; `what` names it in errors ("the filter", "$or element 2"...).
/// Recursion is bounded by the depth check done in `Filter::parse`.
pub(crate) fn parse_doc(json: &Value, what: &str) -> Result<Filter, String> {
    let Value::Object(map) = json else {
        return Err(format!(
            "{what} must be a JSON object, not {}",
            type_name(json)
        ));
    };
    let mut clauses = Vec::with_capacity(map.len());
    for (key, val) in map {
        if let Some(op) = key.strip_prefix('$') {
            clauses.push(parse_logical(op, key, val)?);
        } else {
            let path = Path::parse(key)?;
            clauses.extend(parse_field(path, val)?);
        }
    }
    Ok(if clauses.len() == 1 {
        clauses.pop().unwrap_or_else(Filter::match_all)
    } else {
        Filter::And(clauses)
    })
}

fn parse_logical(op: &str, key: &str, val: &Value) -> Result<Filter, String> {
    let make: fn(Vec<Filter>) -> Filter = match op {
        "and" => Filter::And,
        "or" => Filter::Or,
        "nor" => Filter::Nor,
        "where" | "expr" | "text" | "jsonSchema" | "comment" | "sampleRate" => {
            return Err(format!(
                "the operator {key} is not supported; a filter may use $and, $or and $nor at the \
                 top level and field operators inside a field"
            ));
        }
        _ => {
            return Err(format!(
                "unknown top-level operator {key}; a filter may use $and, $or and $nor at the top \
                 level, and operators such as $eq or $in only inside a field, as in \
                 {{\"field\": {{\"{key}\": ...}}}}"
            ));
        }
    };
    let Value::Array(items) = val else {
        return Err(format!(
            "{key} needs an array of filter objects, not {}",
            type_name(val)
        ));
    };
    if items.is_empty() {
        return Err(format!("{key} needs a non-empty array of filter objects"));
    }
    let children = items
        .iter()
        .enumerate()
        .map(|(i, f)| parse_doc(f, &format!("element {i} of {key}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(make(children))
}

/// Whether an object is an operator object (`{"$gt": 1}`); `Err` when it mixes operators and
/// plain keys, which MongoDB would silently read in a way nobody means.
fn is_operator_object(map: &Map<String, Value>, path: &str) -> Result<bool, String> {
    let dollar = map.keys().filter(|k| k.starts_with('$')).count();
    if dollar == 0 {
        return Ok(false);
    }
    if dollar != map.len() {
        return Err(format!(
            "the condition on '{path}' mixes operators ({}) with plain fields ({}); use either \
             operators or a literal object",
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
        ));
    }
    Ok(true)
}

/// `{"path": value}`: one clause per operator, AND-ed by the caller.
fn parse_field(path: Path, val: &Value) -> Result<Vec<Filter>, String> {
    let conds = match val {
        Value::Object(map) if is_operator_object(map, path.as_str())? => {
            parse_ops(map, path.as_str())?
        }
        literal => vec![Cond::Eq(literal.clone())],
    };
    Ok(conds
        .into_iter()
        .map(|cond| {
            Filter::Field(FieldFilter {
                path: path.clone(),
                cond,
            })
        })
        .collect())
}

/// The operators of one operator object (every key starts with `$`).
pub(crate) fn parse_ops(map: &Map<String, Value>, path: &str) -> Result<Vec<Cond>, String> {
    let mut conds = Vec::with_capacity(map.len());
    let options = match map.get("$options") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(format!(
                "$options on '{path}' must be a string of the letters i, m, s, x, not {}",
                type_name(other)
            ));
        }
    };
    if options.is_some() && !map.contains_key("$regex") {
        return Err(format!("$options on '{path}' needs a $regex beside it"));
    }
    for (key, arg) in map {
        let cond = match key.as_str() {
            "$eq" => Cond::Eq(arg.clone()),
            "$ne" => Cond::Ne(arg.clone()),
            "$gt" => Cond::Gt(comparable(key, arg, path)?),
            "$gte" => Cond::Gte(comparable(key, arg, path)?),
            "$lt" => Cond::Lt(comparable(key, arg, path)?),
            "$lte" => Cond::Lte(comparable(key, arg, path)?),
            "$in" => Cond::In(ValueSet::new(value_list(key, arg, path)?)),
            "$nin" => Cond::Nin(ValueSet::new(value_list(key, arg, path)?)),
            "$all" => Cond::All(ValueSet::new(value_list(key, arg, path)?)),
            "$exists" => Cond::Exists(match arg {
                Value::Bool(b) => *b,
                // MongoDB reads `{"$exists": 1}` and `{"$exists": 0}` too.
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                other => {
                    return Err(format!(
                        "$exists on '{path}' needs true or false, not {}",
                        type_name(other)
                    ));
                }
            }),
            "$size" => Cond::Size(size_arg(arg, path)?),
            "$regex" => {
                let Value::String(pattern) = arg else {
                    return Err(format!(
                        "$regex on '{path}' needs a pattern string, not {}",
                        type_name(arg)
                    ));
                };
                Cond::Regex(
                    RegexCond::new(pattern, options.unwrap_or(""))
                        .map_err(|e| format!("{e} (on '{path}')"))?,
                )
            }
            "$options" => continue,
            "$not" => {
                let Value::Object(inner) = arg else {
                    return Err(format!(
                        "$not on '{path}' needs an operator object such as {{\"$regex\": \"...\"}} \
                         or {{\"$gt\": 5}}, not {}",
                        type_name(arg)
                    ));
                };
                if inner.is_empty() || !is_operator_object(inner, path)? {
                    return Err(format!(
                        "$not on '{path}' needs a non-empty operator object such as \
                         {{\"$gt\": 5}}; to negate a value use $ne"
                    ));
                }
                Cond::Not(parse_ops(inner, path)?)
            }
            "$elemMatch" => {
                let Value::Object(inner) = arg else {
                    return Err(format!(
                        "$elemMatch on '{path}' needs an object, not {}",
                        type_name(arg)
                    ));
                };
                let value_form = inner
                    .keys()
                    .any(|k| k.starts_with('$') && !matches!(k.as_str(), "$and" | "$or" | "$nor"));
                if value_form {
                    if !is_operator_object(inner, path)?
                        || inner
                            .keys()
                            .any(|k| matches!(k.as_str(), "$and" | "$or" | "$nor"))
                    {
                        return Err(format!(
                            "$elemMatch on '{path}' mixes value operators with field conditions \
                             or $and/$or/$nor"
                        ));
                    }
                    Cond::ElemMatch(ElemMatch::Value(parse_ops(inner, path)?))
                } else {
                    Cond::ElemMatch(ElemMatch::Doc(Box::new(parse_doc(
                        arg,
                        &format!("the $elemMatch on '{path}'"),
                    )?)))
                }
            }
            "$where" | "$expr" | "$text" | "$type" | "$mod" | "$bitsAllSet" | "$bitsAnySet"
            | "$bitsAllClear" | "$bitsAnyClear" | "$geoWithin" | "$geoIntersects" | "$near"
            | "$nearSphere" | "$jsonSchema" | "$and" | "$or" | "$nor" => {
                return Err(format!(
                    "the operator {key} (on '{path}') is not supported; supported operators are \
                     $eq $ne $gt $gte $lt $lte $in $nin $exists $all $size $regex $options $not \
                     $elemMatch"
                ));
            }
            other => {
                return Err(format!(
                    "unknown operator {other} (on '{path}'); supported operators are $eq $ne $gt \
                     $gte $lt $lte $in $nin $exists $all $size $regex $options $not $elemMatch"
                ));
            }
        };
        conds.push(cond);
    }
    Ok(conds)
}

fn comparable(key: &str, arg: &Value, path: &str) -> Result<Value, String> {
    match arg {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(arg.clone()),
        _ => Err(format!(
            "{key} on '{path}' needs a number, a string, a boolean or null, not {}; ordering \
             arrays and objects is not supported",
            type_name(arg)
        )),
    }
}

fn value_list(key: &str, arg: &Value, path: &str) -> Result<Vec<Value>, String> {
    let Value::Array(items) = arg else {
        return Err(format!(
            "{key} on '{path}' needs an array of values, not {}",
            type_name(arg)
        ));
    };
    if items.len() > MAX_IN_VALUES {
        return Err(format!(
            "{key} on '{path}' lists more than {MAX_IN_VALUES} values"
        ));
    }
    for item in items {
        if let Value::Object(m) = item
            && let Some(k) = m.keys().find(|k| k.starts_with('$'))
        {
            return Err(format!(
                "{key} on '{path}' lists an operator object ({k}); {key} takes plain values \
                     only"
            ));
        }
    }
    Ok(items.clone())
}

fn size_arg(arg: &Value, path: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "$size on '{path}' needs a non-negative whole number, not {}",
            short(arg)
        )
    };
    let Value::Number(n) = arg else {
        return Err(bad());
    };
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => Ok(f as u64),
        _ => Err(bad()),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    truncate(&s, 40).to_string()
}
