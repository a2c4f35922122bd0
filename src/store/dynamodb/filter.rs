//! Predicate pushdown: a [`Filter`] translated into a DynamoDB Scan `FilterExpression`.
//!
//! The contract: the expression may keep items the filter rejects, but it never drops an item
//! that [`Filter::matches`] accepts; the store re-evaluates every returned item in Rust. Pure
//! code, no SDK types: values are JSON, for the store to convert with `serde_dynamo` (number ->
//! N, string -> S, bool -> BOOL, null -> NULL, array -> L, object -> M), which is also how items
//! are written.
//!
//! # How
//!
//! Every filter node gets two DynamoDB conditions: `sup`, which holds for every item the node
//! matches (it may hold for more), and `sub`, which holds only for items the node matches (it may
//! miss some). `NOT` swaps them, so a negation (`$ne`, `$nin`, `$not`, `$nor`) is pushed down as
//! `NOT sub` of its positive form; when nothing sound is known, `sub` is FALSE and the negation
//! pushes down nothing. When `sup` and `sub` coincide the node is *exact*. AND keeps the parts it
//! can push down; an OR with a part that cannot be pushed down pushes down nothing.
//!
//! A path `a.b.c` is read in DynamoDB as `#a.#b.#c`, which only walks maps. In the query language
//! the same path also walks arrays (implicit traversal, numeric segments as positions), so a
//! multi-segment path keeps, besides its own condition, every item where a prefix (`a`, `a.b`) is
//! a list: `attribute_type(#a, :L) OR attribute_type(#a.#b, :L) OR <condition on #a.#b.#c>`.
//! Numeric segments are map keys in DynamoDB (`#n` = "0"); when the prefix is a list, that same
//! guard keeps the item. Only single-segment conditions can be exact.
//!
//! What is pushed down, per operator, on the value `X` at the path:
//! - `$eq`/`$in` on a non-empty string, a number of magnitude below 2^53, or a boolean:
//!   `X = :v` / `X IN (...)` (chunks of at most 100 operands), OR, for list membership,
//!   `attribute_type(X, :L) AND contains(X, :v)` (strings and numbers only; `contains` is never
//!   used on a string except for a literal `$regex`, guarded by `attribute_type(X, :S)`). Zero is
//!   compared with `BETWEEN :0 AND :0`, so that a stored `-0` still matches. With
//!   [`TranslateOptions::list_contains`] off (dynalite, whose `contains` tests no list), list
//!   membership keeps every list.
//! - `null` equality: `attribute_not_exists(X) OR attribute_type(X, :NULL)`, plus every list.
//! - `$gt $gte $lt $lte` on numbers and on strings of code points below U+D800 (where UTF-8 and
//!   UTF-16 orders agree): `X > :v`, plus every list (DynamoDB cannot look inside a list).
//!   Booleans and null are rewritten as equalities.
//! - `$exists`: `attribute_exists(X)`. `$size`: `attribute_type(X, :L) AND size(X) = :n`.
//! - `$regex` with no `i`, `m` or `x` option: `^literal...` becomes `begins_with(X, :p)`, a pure
//!   literal becomes a substring `contains(X, :s)`, both guarded by `attribute_type(X, :S)`, plus
//!   every list.
//! - `$elemMatch`, equality with arrays and objects: type guards only.
//! - Anything else, and the empty string (which DynamoDB may refuse as a value): nothing.
//!
//! Limits: the text is at most [`TranslateOptions::max_expression_len`] bytes (DynamoDB: 4 KB) and
//! the values at most [`MAX_VALUES_BYTES`]; a bigger translation is weakened, largest part first,
//! until it fits (an item is never dropped for it, and it is never an error). Every attribute name
//! and value goes through a placeholder (`#n0`, `:v0`), deduplicated, each one used.

use std::collections::HashMap;

use serde_json::{Number, Value};

use crate::query::{Cond, ElemMatch, FieldFilter, Filter, RegexCond};

/// A Scan filter, ready for `FilterExpression`, `ExpressionAttributeNames` and
/// `ExpressionAttributeValues`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterExpression {
    /// The expression text; names and values appear only as placeholders.
    pub expression: String,
    /// `"#n0"` -> `"container_registry_tags"`.
    pub names: HashMap<String, String>,
    /// `":v0"` -> a JSON value, to convert with `serde_dynamo`.
    pub values: HashMap<String, Value>,
    /// True when the items DynamoDB returns are exactly the items the filter matches (under
    /// DynamoDB's documented semantics); the store may still re-check, and always should on an
    /// emulator.
    pub exact: bool,
}

/// How to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranslateOptions {
    /// Use `contains(list, :v)` for list membership, as DynamoDB documents it. dynalite's
    /// `contains` only looks into strings and sets, so turn this off there: list membership then
    /// keeps every list (still correct, less selective).
    pub list_contains: bool,
    /// Longest expression text, in bytes (DynamoDB's limit is 4 KB).
    pub max_expression_len: usize,
}

impl TranslateOptions {
    /// For Amazon DynamoDB.
    pub const DYNAMODB: TranslateOptions = TranslateOptions {
        list_contains: true,
        max_expression_len: 4096,
    };
    /// For dynalite (local tests).
    pub const DYNALITE: TranslateOptions = TranslateOptions {
        list_contains: false,
        max_expression_len: 4096,
    };
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions::DYNAMODB
    }
}

/// Most bytes of JSON text across all values of one expression (DynamoDB allows 2 MB of
/// substitution values).
pub const MAX_VALUES_BYTES: usize = 1 << 20;

/// Most operands of one `IN` (DynamoDB's limit).
const MAX_IN_OPERANDS: usize = 100;

/// DynamoDB's deepest document path.
const MAX_DOCUMENT_PATH_DEPTH: usize = 32;

/// Numbers at or beyond this magnitude are not pushed down: JSON floats there print as decimals
/// that need not equal their binary value, and DynamoDB compares the decimals.
const SAFE_INTEGER: f64 = 9_007_199_254_740_992.0; // 2^53

/// Translates for Amazon DynamoDB; `None` means push down nothing (scan everything).
pub fn translate(filter: &Filter) -> Option<FilterExpression> {
    translate_with(filter, &TranslateOptions::DYNAMODB)
}

/// Translates with explicit options; `None` means push down nothing (scan everything).
pub fn translate_with(filter: &Filter, options: &TranslateOptions) -> Option<FilterExpression> {
    let approx = approx_filter(filter, options);
    let mut sup = approx.sup;
    let mut weakened = false;
    loop {
        if sup == Expr::True {
            return None;
        }
        let out = render_root(&sup);
        if out.expression.len() <= options.max_expression_len
            && out.values_bytes <= MAX_VALUES_BYTES
        {
            return Some(FilterExpression {
                expression: out.expression,
                names: out.names,
                values: out.values,
                exact: approx.exact && !weakened,
            });
        }
        weakened = true;
        sup = weaken(sup);
    }
}

// ---------------------------------------------------------------------------------------------
// The DynamoDB condition tree.

/// A document path of map keys: `#a.#b`.
type DPath = Vec<String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn text(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    True,
    False,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `attribute_exists(p)`; `NOT` of it renders as `attribute_not_exists(p)`.
    Exists(DPath),
    /// `attribute_type(p, :t)`.
    Type(DPath, &'static str),
    /// `p op :v`.
    Cmp(DPath, CmpOp, Value),
    /// `p BETWEEN :v AND :v`: numeric equality that does not depend on the decimal spelling.
    Between(DPath, Value),
    /// `p IN (:a, :b, ...)`, at most 100 operands.
    In(DPath, Vec<Value>),
    /// `contains(p, :v)`.
    Contains(DPath, Value),
    /// `begins_with(p, :s)`.
    BeginsWith(DPath, String),
    /// `size(p) = :n`.
    SizeEq(DPath, u64),
}

fn and(parts: Vec<Expr>) -> Expr {
    let mut out: Vec<Expr> = Vec::new();
    for p in parts {
        match p {
            Expr::True => {}
            Expr::False => return Expr::False,
            Expr::And(inner) => {
                for q in inner {
                    if !out.contains(&q) {
                        out.push(q);
                    }
                }
            }
            q => {
                if !out.contains(&q) {
                    out.push(q);
                }
            }
        }
    }
    match out.len() {
        0 => Expr::True,
        1 => out.pop().unwrap_or(Expr::True),
        _ => Expr::And(out),
    }
}

fn or(parts: Vec<Expr>) -> Expr {
    let mut out: Vec<Expr> = Vec::new();
    for p in parts {
        match p {
            Expr::False => {}
            Expr::True => return Expr::True,
            Expr::Or(inner) => {
                for q in inner {
                    if !out.contains(&q) {
                        out.push(q);
                    }
                }
            }
            q => {
                if !out.contains(&q) {
                    out.push(q);
                }
            }
        }
    }
    match out.len() {
        0 => Expr::False,
        1 => out.pop().unwrap_or(Expr::False),
        _ => Expr::Or(out),
    }
}

/// Negation, pushed down to the atoms (De Morgan), so `NOT` only ever wraps an atom.
fn not(e: Expr) -> Expr {
    match e {
        Expr::True => Expr::False,
        Expr::False => Expr::True,
        Expr::Not(inner) => *inner,
        Expr::And(xs) => or(xs.into_iter().map(not).collect()),
        Expr::Or(xs) => and(xs.into_iter().map(not).collect()),
        e => Expr::Not(Box::new(e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Filter -> (sup, sub).

/// `sup` holds for every matching item, `sub` only for matching items; equal when `exact`.
#[derive(Debug, Clone)]
struct Approx {
    sup: Expr,
    sub: Expr,
    exact: bool,
}

impl Approx {
    fn exact(e: Expr) -> Approx {
        Approx {
            sup: e.clone(),
            sub: e,
            exact: true,
        }
    }
    fn bounds(sup: Expr, sub: Expr) -> Approx {
        let exact = sup == sub;
        Approx { sup, sub, exact }
    }
    /// Nothing known: keep everything, promise nothing.
    fn unknown() -> Approx {
        Approx {
            sup: Expr::True,
            sub: Expr::False,
            exact: false,
        }
    }
    fn negate(self) -> Approx {
        Approx {
            sup: not(self.sub),
            sub: not(self.sup),
            exact: self.exact,
        }
    }
}

fn all(parts: Vec<Approx>) -> Approx {
    let exact = parts.iter().all(|p| p.exact);
    let (sups, subs): (Vec<_>, Vec<_>) = parts.into_iter().map(|p| (p.sup, p.sub)).unzip();
    Approx {
        sup: and(sups),
        sub: and(subs),
        exact,
    }
}

fn any(parts: Vec<Approx>) -> Approx {
    let exact = parts.iter().all(|p| p.exact);
    let (sups, subs): (Vec<_>, Vec<_>) = parts.into_iter().map(|p| (p.sup, p.sub)).unzip();
    Approx {
        sup: or(sups),
        sub: or(subs),
        exact,
    }
}

fn approx_filter(f: &Filter, o: &TranslateOptions) -> Approx {
    match f {
        Filter::And(fs) => all(fs.iter().map(|f| approx_filter(f, o)).collect()),
        Filter::Or(fs) => any(fs.iter().map(|f| approx_filter(f, o)).collect()),
        Filter::Nor(fs) => any(fs.iter().map(|f| approx_filter(f, o)).collect()).negate(),
        Filter::Field(FieldFilter { path, cond }) => approx_field(path.segments(), cond, o),
    }
}

fn approx_field(segs: &[String], cond: &Cond, o: &TranslateOptions) -> Approx {
    match cond {
        Cond::Ne(v) => approx_field(segs, &Cond::Eq(v.clone()), o).negate(),
        Cond::Nin(vs) => approx_field(segs, &Cond::In(vs.clone()), o).negate(),
        Cond::Exists(false) => approx_field(segs, &Cond::Exists(true), o).negate(),
        Cond::Not(cs) => all(cs.iter().map(|c| approx_field(segs, c, o)).collect()).negate(),
        Cond::All(vs) if vs.is_empty() => Approx::exact(Expr::False),
        Cond::All(vs) => all(vs
            .iter()
            .map(|v| approx_field(segs, &Cond::Eq(v.clone()), o))
            .collect()),
        _ => {
            if segs.is_empty() || segs.len() > MAX_DOCUMENT_PATH_DEPTH {
                return Approx::unknown();
            }
            let x: DPath = segs.to_vec();
            let leaf = approx_leaf(&x, cond, o);
            if segs.len() == 1 || (leaf.approx.exact && leaf.approx.sup == Expr::False) {
                return leaf.approx;
            }
            // A list anywhere before the last segment: the query language may reach the value
            // through it, DynamoDB's map path cannot.
            let lists = or((1..segs.len())
                .map(|i| Expr::Type(segs[..i].to_vec(), "L"))
                .collect());
            let sup = or(vec![lists.clone(), leaf.approx.sup]);
            let sub = if leaf.sub_needs_maps {
                and(vec![not(lists), leaf.approx.sub])
            } else {
                leaf.approx.sub
            };
            Approx {
                sup,
                sub,
                exact: false,
            }
        }
    }
}

/// The translation of a positive condition on the single value at a map path.
struct Leaf {
    approx: Approx,
    /// `sub` may hold when the value is missing, so on a longer path it is only evidence when no
    /// prefix is a list (otherwise `sub` implies the value exists, hence every prefix is a map).
    sub_needs_maps: bool,
}

impl From<Approx> for Leaf {
    fn from(approx: Approx) -> Leaf {
        Leaf {
            approx,
            sub_needs_maps: false,
        }
    }
}

fn approx_leaf(x: &DPath, cond: &Cond, o: &TranslateOptions) -> Leaf {
    match cond {
        Cond::Eq(v) => leaf_eq(x, v, o),
        Cond::In(vs) => leaf_in(x, vs, o),
        Cond::Gt(v) => leaf_cmp(x, CmpOp::Gt, v, o),
        Cond::Gte(v) => leaf_cmp(x, CmpOp::Ge, v, o),
        Cond::Lt(v) => leaf_cmp(x, CmpOp::Lt, v, o),
        Cond::Lte(v) => leaf_cmp(x, CmpOp::Le, v, o),
        Cond::Exists(true) => Approx::exact(Expr::Exists(x.clone())).into(),
        Cond::Size(n) if (*n as f64) < SAFE_INTEGER => Approx::exact(and(vec![
            Expr::Type(x.clone(), "L"),
            Expr::SizeEq(x.clone(), *n),
        ]))
        .into(),
        // No array that long exists.
        Cond::Size(_) => Approx::exact(Expr::False).into(),
        Cond::Regex(r) => leaf_regex(x, r).into(),
        Cond::ElemMatch(ElemMatch::Value(_) | ElemMatch::Doc(_)) => {
            Approx::bounds(Expr::Type(x.clone(), "L"), Expr::False).into()
        }
        // Negative forms are handled by `approx_field`.
        _ => Approx::unknown().into(),
    }
}

/// A number DynamoDB compares the way the query language does, normalized (integral floats as
/// integers, so that 1.0 and 1 share a placeholder); `None` when it must not be pushed down.
fn pushable_number(n: &Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return ((i.unsigned_abs() as f64) < SAFE_INTEGER).then(|| Value::from(i));
    }
    if let Some(u) = n.as_u64() {
        return ((u as f64) < SAFE_INTEGER).then(|| Value::from(u));
    }
    let f = n.as_f64()?;
    if f.is_nan() || f.abs() >= SAFE_INTEGER {
        return None;
    }
    if f.fract() == 0.0 {
        return Some(Value::from(f as i64));
    }
    // DynamoDB numbers stop at 1e-130; below that a value would be refused.
    if f.abs() < 1e-120 {
        return None;
    }
    Some(Value::Number(n.clone()))
}

fn is_zero(v: &Value) -> bool {
    v.as_f64() == Some(0.0)
}

/// `x = v` for a scalar `v` already known to be pushable.
fn scalar_eq(x: &DPath, v: Value) -> Expr {
    if is_zero(&v) {
        Expr::Between(x.clone(), v)
    } else {
        Expr::Cmp(x.clone(), CmpOp::Eq, v)
    }
}

/// Whether `v` is an element of the list at `x`, for a pushable string or number `v`.
fn member(x: &DPath, v: Value, o: &TranslateOptions) -> Approx {
    if o.list_contains && (v.is_string() || v.is_number()) {
        Approx::exact(and(vec![
            Expr::Type(x.clone(), "L"),
            Expr::Contains(x.clone(), v),
        ]))
    } else {
        Approx::bounds(Expr::Type(x.clone(), "L"), Expr::False)
    }
}

/// A scalar the translation can compare with `=`: a non-empty string, a safe number, a boolean.
fn pushable_scalar(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) if !s.is_empty() => Some(v.clone()),
        Value::Bool(_) => Some(v.clone()),
        Value::Number(n) => pushable_number(n),
        _ => None,
    }
}

fn leaf_eq(x: &DPath, v: &Value, o: &TranslateOptions) -> Leaf {
    if let Some(p) = pushable_scalar(v) {
        let m = member(x, p.clone(), o);
        let eq = scalar_eq(x, p);
        return Approx {
            sup: or(vec![eq.clone(), m.sup]),
            sub: or(vec![eq, m.sub]),
            exact: m.exact,
        }
        .into();
    }
    let list = Expr::Type(x.clone(), "L");
    match v {
        Value::Null => {
            let missing_or_null = or(vec![
                not(Expr::Exists(x.clone())),
                Expr::Type(x.clone(), "NULL"),
            ]);
            Leaf {
                approx: Approx::bounds(or(vec![missing_or_null.clone(), list]), missing_or_null),
                sub_needs_maps: true,
            }
        }
        Value::Number(_) => {
            Approx::bounds(or(vec![Expr::Type(x.clone(), "N"), list]), Expr::False).into()
        }
        Value::Array(_) => Approx::bounds(list, Expr::False).into(),
        Value::Object(_) => {
            Approx::bounds(or(vec![Expr::Type(x.clone(), "M"), list]), Expr::False).into()
        }
        // The empty string: DynamoDB may refuse it as a value, and dynalite mistypes it.
        _ => Approx::unknown().into(),
    }
}

fn leaf_in(x: &DPath, vs: &[Value], o: &TranslateOptions) -> Leaf {
    // Values `IN` can carry as-is; zero, false, null and the rest go through `leaf_eq` (dynalite's
    // IN never matches a stored "" or false, and zero is compared with BETWEEN).
    let mut plain: Vec<Value> = Vec::new();
    let mut others: Vec<Leaf> = Vec::new();
    for v in vs {
        match pushable_scalar(v) {
            Some(p) if !is_zero(&p) && p != Value::Bool(false) => {
                if !plain.iter().any(|q| crate::query::values_equal(q, &p)) {
                    plain.push(p);
                }
            }
            _ => others.push(leaf_eq(x, v, o)),
        }
    }
    let mut parts: Vec<Approx> = Vec::new();
    if !plain.is_empty() {
        let eq = or(plain
            .chunks(MAX_IN_OPERANDS)
            .map(|chunk| match chunk {
                [one] => Expr::Cmp(x.clone(), CmpOp::Eq, one.clone()),
                many => Expr::In(x.clone(), many.to_vec()),
            })
            .collect());
        parts.push(Approx::exact(eq));
        parts.push(any(plain.into_iter().map(|v| member(x, v, o)).collect()));
    }
    let sub_needs_maps = others.iter().any(|l| l.sub_needs_maps);
    parts.extend(others.into_iter().map(|l| l.approx));
    Leaf {
        approx: any(parts),
        sub_needs_maps,
    }
}

fn leaf_cmp(x: &DPath, op: CmpOp, v: &Value, o: &TranslateOptions) -> Leaf {
    let t = Value::Bool(true);
    let f = Value::Bool(false);
    match (v, op) {
        // Only null is comparable with null: `$gte`/`$lte` null mean `== null`.
        (Value::Null, CmpOp::Ge | CmpOp::Le) => leaf_eq(x, v, o),
        (Value::Null, _) => Approx::exact(Expr::False).into(),
        // Booleans only compare with booleans, false < true: rewrite as equalities.
        (Value::Bool(b), _) => match (op, *b) {
            (CmpOp::Gt, false) | (CmpOp::Ge, true) => leaf_eq(x, &t, o),
            (CmpOp::Lt, true) | (CmpOp::Le, false) => leaf_eq(x, &f, o),
            (CmpOp::Ge, false) | (CmpOp::Le, true) => leaf_in(x, &[t, f], o),
            _ => Approx::exact(Expr::False).into(),
        },
        (Value::String(s), _) if !s.is_empty() && s.chars().all(|c| (c as u32) < 0xD800) => {
            range(x, op, v.clone())
        }
        (Value::Number(n), _) => match pushable_number(n) {
            Some(p) => range(x, op, p),
            None => Approx::unknown().into(),
        },
        _ => Approx::unknown().into(),
    }
}

fn range(x: &DPath, op: CmpOp, v: Value) -> Leaf {
    let cmp = Expr::Cmp(x.clone(), op, v);
    Approx::bounds(or(vec![cmp.clone(), Expr::Type(x.clone(), "L")]), cmp).into()
}

fn leaf_regex(x: &DPath, r: &RegexCond) -> Approx {
    if r.options().contains(['i', 'm', 'x']) {
        return Approx::unknown();
    }
    let Some(lit) = literal_regex(r.pattern()) else {
        return Approx::unknown();
    };
    if lit.text.is_empty() {
        return Approx::unknown();
    }
    let string = Expr::Type(x.clone(), "S");
    let test = if lit.anchored {
        Expr::BeginsWith(x.clone(), lit.text)
    } else {
        Expr::Contains(x.clone(), Value::String(lit.text))
    };
    let scalar = and(vec![string, test]);
    let sup = or(vec![scalar.clone(), Expr::Type(x.clone(), "L")]);
    let sub = if lit.whole { scalar } else { Expr::False };
    Approx::bounds(sup, sub)
}

/// What a pattern says literally: an anchored prefix (`^abc...`), or, when `whole` and not
/// anchored, the entire pattern as a plain substring.
#[derive(Debug, PartialEq)]
struct Literal {
    text: String,
    anchored: bool,
    /// The pattern is exactly the (anchor and) literal, nothing after.
    whole: bool,
}

fn literal_regex(pattern: &str) -> Option<Literal> {
    // An alternation anywhere could bypass the anchor (`^a|b`); do not reason about it.
    if pattern.contains('|') {
        return None;
    }
    let (anchored, rest) = if let Some(r) = pattern.strip_prefix('^') {
        (true, r)
    } else if let Some(r) = pattern.strip_prefix("\\A") {
        (true, r)
    } else {
        (false, pattern)
    };
    let mut text = String::new();
    let mut chars = rest.chars().peekable();
    let mut whole = true;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) if n.is_ascii_punctuation() => text.push(n),
                _ => {
                    whole = false;
                    break;
                }
            },
            '*' | '?' | '{' => {
                // The previous literal character is optional.
                text.pop();
                whole = false;
                break;
            }
            '.' | '+' | '(' | ')' | '[' | ']' | '}' | '^' | '$' | '|' => {
                whole = false;
                break;
            }
            c => text.push(c),
        }
    }
    if !anchored && !whole {
        return None;
    }
    Some(Literal {
        text,
        anchored,
        whole,
    })
}

// ---------------------------------------------------------------------------------------------
// Weakening to fit DynamoDB's limits.

/// Replaces the biggest non-root part by what keeps more items (TRUE where it counts positively,
/// FALSE under an odd number of NOTs), then simplifies.
fn weaken(e: Expr) -> Expr {
    let mut best: Option<(usize, Vec<usize>, bool)> = None;
    fn visit(
        e: &Expr,
        addr: &mut Vec<usize>,
        positive: bool,
        best: &mut Option<(usize, Vec<usize>, bool)>,
    ) {
        if !addr.is_empty() {
            let size = render_len(e);
            if best.as_ref().is_none_or(|(s, _, _)| size > *s) {
                *best = Some((size, addr.clone(), positive));
            }
        }
        let children: &[Expr] = match e {
            Expr::And(xs) | Expr::Or(xs) => xs,
            Expr::Not(x) => std::slice::from_ref(x.as_ref()),
            _ => &[],
        };
        let flip = matches!(e, Expr::Not(_));
        for (i, c) in children.iter().enumerate() {
            addr.push(i);
            visit(c, addr, positive != flip, best);
            addr.pop();
        }
    }
    visit(&e, &mut Vec::new(), true, &mut best);
    let Some((_, addr, positive)) = best else {
        return Expr::True;
    };
    replace(e, &addr, if positive { Expr::True } else { Expr::False })
}

fn replace(e: Expr, addr: &[usize], with: Expr) -> Expr {
    let Some((&i, rest)) = addr.split_first() else {
        return with;
    };
    match e {
        Expr::And(xs) => and(xs
            .into_iter()
            .enumerate()
            .map(|(j, x)| {
                if j == i {
                    replace(x, rest, with.clone())
                } else {
                    x
                }
            })
            .collect()),
        Expr::Or(xs) => or(xs
            .into_iter()
            .enumerate()
            .map(|(j, x)| {
                if j == i {
                    replace(x, rest, with.clone())
                } else {
                    x
                }
            })
            .collect()),
        Expr::Not(x) => not(replace(*x, rest, with)),
        leaf => leaf,
    }
}

fn render_len(e: &Expr) -> usize {
    let mut r = Renderer::default();
    let mut s = String::new();
    r.render(e, &mut s);
    s.len()
}

// ---------------------------------------------------------------------------------------------
// Rendering with placeholders.

struct Rendered {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, Value>,
    values_bytes: usize,
}

#[derive(Default)]
struct Renderer {
    /// attribute name -> placeholder
    names: HashMap<String, String>,
    /// canonical JSON text of a value -> placeholder
    value_ids: HashMap<String, String>,
    values: HashMap<String, Value>,
    values_bytes: usize,
}

fn render_root(e: &Expr) -> Rendered {
    let mut r = Renderer::default();
    let mut s = String::new();
    if *e == Expr::False {
        // Nothing can match; DynamoDB has no FALSE literal, so state a contradiction.
        let p = vec!["container_registry_id".to_string()];
        r.render(
            &and(vec![Expr::Exists(p.clone()), not(Expr::Exists(p))]),
            &mut s,
        );
    } else {
        r.render(e, &mut s);
    }
    Rendered {
        expression: s,
        names: r.names.into_iter().map(|(name, ph)| (ph, name)).collect(),
        values: r.values,
        values_bytes: r.values_bytes,
    }
}

impl Renderer {
    fn name(&mut self, segment: &str) -> String {
        let next = self.names.len();
        self.names
            .entry(segment.to_string())
            .or_insert_with(|| format!("#n{next}"))
            .clone()
    }

    fn path(&mut self, p: &DPath) -> String {
        p.iter().map(|s| self.name(s)).collect::<Vec<_>>().join(".")
    }

    fn value(&mut self, v: &Value) -> String {
        let key = v.to_string();
        if let Some(ph) = self.value_ids.get(&key) {
            return ph.clone();
        }
        let ph = format!(":v{}", self.value_ids.len());
        self.values_bytes += key.len();
        self.value_ids.insert(key, ph.clone());
        self.values.insert(ph.clone(), v.clone());
        ph
    }

    fn render(&mut self, e: &Expr, out: &mut String) {
        match e {
            // Only a root can be TRUE or FALSE after simplification; render something valid.
            Expr::True | Expr::False => {
                let p = vec!["container_registry_id".to_string()];
                let x = Expr::Exists(p.clone());
                let e = if *e == Expr::True {
                    or(vec![x.clone(), not(x)])
                } else {
                    and(vec![x.clone(), not(x)])
                };
                self.render(&e, out);
            }
            Expr::Or(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" OR ");
                    }
                    self.render(x, out);
                }
            }
            Expr::And(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" AND ");
                    }
                    if matches!(x, Expr::Or(_)) {
                        out.push('(');
                        self.render(x, out);
                        out.push(')');
                    } else {
                        self.render(x, out);
                    }
                }
            }
            Expr::Not(x) => match x.as_ref() {
                Expr::Exists(p) => {
                    let p = self.path(p);
                    out.push_str(&format!("attribute_not_exists({p})"));
                }
                Expr::And(_) | Expr::Or(_) | Expr::Not(_) | Expr::True | Expr::False => {
                    out.push_str("NOT (");
                    self.render(x, out);
                    out.push(')');
                }
                atom => {
                    out.push_str("NOT ");
                    self.render(atom, out);
                }
            },
            Expr::Exists(p) => {
                let p = self.path(p);
                out.push_str(&format!("attribute_exists({p})"));
            }
            Expr::Type(p, t) => {
                let p = self.path(p);
                let v = self.value(&Value::String((*t).to_string()));
                out.push_str(&format!("attribute_type({p}, {v})"));
            }
            Expr::Cmp(p, op, v) => {
                let p = self.path(p);
                let v = self.value(v);
                out.push_str(&format!("{p} {} {v}", op.text()));
            }
            Expr::Between(p, v) => {
                let p = self.path(p);
                let v = self.value(v);
                out.push_str(&format!("{p} BETWEEN {v} AND {v}"));
            }
            Expr::In(p, vs) => {
                let p = self.path(p);
                let vs: Vec<String> = vs.iter().map(|v| self.value(v)).collect();
                out.push_str(&format!("{p} IN ({})", vs.join(", ")));
            }
            Expr::Contains(p, v) => {
                let p = self.path(p);
                let v = self.value(v);
                out.push_str(&format!("contains({p}, {v})"));
            }
            Expr::BeginsWith(p, s) => {
                let p = self.path(p);
                let v = self.value(&Value::String(s.clone()));
                out.push_str(&format!("begins_with({p}, {v})"));
            }
            Expr::SizeEq(p, n) => {
                let p = self.path(p);
                let v = self.value(&Value::from(*n));
                out.push_str(&format!("size({p}) = {v}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The translation is checked against a model of DynamoDB's documented semantics (and of
    //! dynalite's quirks): for random documents and filters, `sup` keeps every match, `sub` keeps
    //! only matches, and exact translations agree with `Filter::matches`.

    use std::collections::HashSet;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::query::{compare_values, values_equal};

    fn f(v: Value) -> Filter {
        Filter::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn tr(v: Value) -> FilterExpression {
        translate(&f(v.clone())).unwrap_or_else(|| panic!("{v} pushed nothing down"))
    }

    // -- a model of DynamoDB ------------------------------------------------------------------

    fn resolve<'a>(doc: &'a Value, p: &DPath) -> Option<&'a Value> {
        let mut cur = doc;
        for s in p {
            cur = cur.as_object()?.get(s)?;
        }
        Some(cur)
    }

    fn dtype(v: &Value) -> &'static str {
        match v {
            Value::Null => "NULL",
            Value::Bool(_) => "BOOL",
            Value::Number(_) => "N",
            Value::String(_) => "S",
            Value::Array(_) => "L",
            Value::Object(_) => "M",
        }
    }

    /// DynamoDB equality of scalars: same type, numbers by value.
    fn d_eq(a: &Value, b: &Value) -> bool {
        dtype(a) == dtype(b) && !a.is_array() && !a.is_object() && values_equal(a, b)
    }

    /// `dynalite`: model its quirks (`attribute_type` and `IN` miss "" and false).
    fn sim(e: &Expr, doc: &Value, dynalite: bool) -> bool {
        let falsy = |v: &Value| dynalite && (v == &json!("") || v == &json!(false));
        match e {
            Expr::True => true,
            Expr::False => false,
            Expr::And(xs) => xs.iter().all(|x| sim(x, doc, dynalite)),
            Expr::Or(xs) => xs.iter().any(|x| sim(x, doc, dynalite)),
            Expr::Not(x) => !sim(x, doc, dynalite),
            Expr::Exists(p) => resolve(doc, p).is_some(),
            Expr::Type(p, t) => resolve(doc, p).is_some_and(|v| dtype(v) == *t && !falsy(v)),
            Expr::Cmp(p, op, q) => resolve(doc, p).is_some_and(|v| {
                if dtype(v) != dtype(q) {
                    return false;
                }
                match op {
                    CmpOp::Eq => d_eq(v, q),
                    _ if !(v.is_number() || v.is_string()) => false,
                    _ => compare_values(v, q).is_some_and(|o| match op {
                        CmpOp::Lt => o.is_lt(),
                        CmpOp::Le => o.is_le(),
                        CmpOp::Gt => o.is_gt(),
                        CmpOp::Ge => o.is_ge(),
                        CmpOp::Eq => o.is_eq(),
                    }),
                }
            }),
            Expr::Between(p, q) => resolve(doc, p).is_some_and(|v| v.is_number() && d_eq(v, q)),
            Expr::In(p, qs) => {
                assert!(qs.len() <= MAX_IN_OPERANDS);
                resolve(doc, p).is_some_and(|v| !falsy(v) && qs.iter().any(|q| d_eq(v, q)))
            }
            Expr::Contains(p, q) => resolve(doc, p).is_some_and(|v| match (v, q) {
                (Value::String(s), Value::String(t)) => s.contains(t.as_str()),
                (Value::Array(items), q) => !dynalite && items.iter().any(|e| d_eq(e, q)),
                _ => false,
            }),
            Expr::BeginsWith(p, t) => resolve(doc, p)
                .is_some_and(|v| v.as_str().is_some_and(|s| s.starts_with(t.as_str()))),
            Expr::SizeEq(p, n) => resolve(doc, p).is_some_and(|v| match v {
                Value::Array(a) => a.len() as u64 == *n,
                Value::Object(m) => m.len() as u64 == *n,
                Value::String(s) => s.len() as u64 == *n,
                _ => false,
            }),
        }
    }

    /// Checks the placeholders of a rendered expression: each defined one is used, each used one
    /// is defined, and no name or value text appears outside them.
    fn check_placeholders(fe: &FilterExpression) {
        let text = &fe.expression;
        let mut used_names = HashSet::new();
        let mut used_values = HashSet::new();
        let bytes: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if c == '#' || c == ':' {
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == '_') {
                    j += 1;
                }
                let ph: String = bytes[i..j].iter().collect();
                if c == '#' {
                    used_names.insert(ph)
                } else {
                    used_values.insert(ph)
                };
                i = j;
            } else {
                i += 1;
            }
        }
        let defined_names: HashSet<String> = fe.names.keys().cloned().collect();
        let defined_values: HashSet<String> = fe.values.keys().cloned().collect();
        assert_eq!(used_names, defined_names, "{text}");
        assert_eq!(used_values, defined_values, "{text}");
        for ph in used_names.iter().chain(&used_values) {
            assert!(ph.len() > 1 && ph.len() <= 255);
        }
        // Only keywords, function names and placeholders: no spliced text.
        let stripped: String = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '#' || c == ':'))
            .filter(|w| !w.is_empty() && !w.starts_with('#') && !w.starts_with(':'))
            .collect::<Vec<_>>()
            .join(" ");
        for w in stripped.split(' ').filter(|w| !w.is_empty()) {
            assert!(
                matches!(
                    w,
                    "AND"
                        | "OR"
                        | "NOT"
                        | "IN"
                        | "BETWEEN"
                        | "attribute_exists"
                        | "attribute_not_exists"
                        | "attribute_type"
                        | "contains"
                        | "begins_with"
                        | "size"
                ),
                "unexpected word {w} in {text}"
            );
        }
        assert_no_redundant_parentheses(text);
    }

    /// DynamoDB (and dynalite) refuse `((x))`: a group that only wraps another group.
    fn assert_no_redundant_parentheses(text: &str) {
        let b = text.as_bytes();
        let close_of = |open: usize| {
            let mut depth = 0;
            for (k, c) in b.iter().enumerate().skip(open) {
                match c {
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            return k;
                        }
                    }
                    _ => {}
                }
            }
            panic!("unbalanced parentheses: {text}")
        };
        for i in 0..b.len() {
            if b[i] != b'(' {
                continue;
            }
            let ci = close_of(i);
            let j = (i + 1..b.len()).find(|&k| b[k] != b' ').unwrap();
            if b[j] == b'(' {
                let cj = close_of(j);
                let before = (0..ci).rev().find(|&k| b[k] != b' ').unwrap();
                assert_ne!(before, cj, "redundant parentheses at {i} in {text}");
            }
        }
    }

    // -- unit tests ---------------------------------------------------------------------------

    #[test]
    fn match_all_pushes_nothing() {
        assert_eq!(translate(&Filter::match_all()), None);
        assert_eq!(
            translate(&f(json!({"a": {"$regex": "x", "$options": "i"}}))),
            None
        );
    }

    #[test]
    fn equality_on_a_top_level_field_is_exact() {
        let fe = tr(json!({"container_registry_name": "alpha"}));
        check_placeholders(&fe);
        assert!(fe.exact);
        assert_eq!(
            fe.expression,
            "#n0 = :v0 OR attribute_type(#n0, :v1) AND contains(#n0, :v0)"
        );
        assert_eq!(fe.names["#n0"], "container_registry_name");
        assert_eq!(fe.values[":v0"], json!("alpha"));
        assert_eq!(fe.values[":v1"], json!("L"));
    }

    #[test]
    fn list_membership_is_guarded_so_it_is_never_a_substring_test() {
        let fe = tr(json!({"container_registry_tags": "ai"}));
        assert!(
            fe.expression
                .contains("attribute_type(#n0, :v1) AND contains(#n0, :v0)")
        );
        // dynalite's contains does not look into lists: no contains at all there.
        let fe = translate_with(
            &f(json!({"container_registry_tags": "ai"})),
            &TranslateOptions::DYNALITE,
        )
        .unwrap();
        check_placeholders(&fe);
        assert!(!fe.expression.contains("contains"));
        assert!(!fe.exact);
    }

    #[test]
    fn reserved_words_and_odd_names_go_through_placeholders() {
        for name in [
            "name",
            "size",
            "status",
            "a-b",
            "with space",
            "x#y",
            "x:y",
            "ÜNICODE",
            "0",
        ] {
            let mut m = serde_json::Map::new();
            m.insert(format!("container_registry_health.{name}"), json!(1));
            let filter = f(Value::Object(m));
            let fe = translate(&filter).unwrap();
            check_placeholders(&fe);
            assert!(fe.names.values().any(|n| n == name), "{name}: {fe:?}");
            if name.chars().all(char::is_alphabetic) && name != "size" {
                assert!(
                    !fe.expression.contains(name),
                    "{name} spliced: {}",
                    fe.expression
                );
            }
        }
    }

    #[test]
    fn placeholders_are_deduplicated() {
        let fe = tr(json!({"$or": [{"a.b": "x"}, {"b.a": "x"}, {"a": "x"}]}));
        check_placeholders(&fe);
        assert_eq!(fe.names.len(), 2);
        assert_eq!(fe.values.values().filter(|v| **v == json!("x")).count(), 1);
    }

    #[test]
    fn nested_paths_keep_items_where_a_prefix_is_a_list() {
        let fe = tr(json!({"container_registry_storage_info.storage_type": "s3"}));
        check_placeholders(&fe);
        assert!(!fe.exact);
        assert!(
            fe.expression
                .starts_with("attribute_type(#n0, :v0) OR #n0.#n1 = :v1"),
            "{}",
            fe.expression
        );
    }

    #[test]
    fn null_equality_and_its_negation() {
        let fe = tr(json!({"a": null}));
        check_placeholders(&fe);
        assert_eq!(
            fe.expression,
            "attribute_not_exists(#n0) OR attribute_type(#n0, :v0) OR attribute_type(#n0, :v1)"
        );
        assert_eq!(fe.values[":v0"], json!("NULL"));
        let fe = tr(json!({"a": {"$ne": null}}));
        assert_eq!(
            fe.expression,
            "attribute_exists(#n0) AND NOT attribute_type(#n0, :v0)"
        );
        assert_no_redundant_parentheses("((a) AND b)");
        assert!(!fe.exact);
    }

    #[test]
    fn negation_of_an_exact_translation_is_exact() {
        let fe = tr(json!({"container_registry_tags": {"$ne": "ai"}}));
        check_placeholders(&fe);
        assert!(fe.exact);
        assert_eq!(
            fe.expression,
            "NOT #n0 = :v0 AND (NOT attribute_type(#n0, :v1) OR NOT contains(#n0, :v0))"
        );
        // Under dynalite the positive form is not exact: NOT of what is surely a match.
        let fe = translate_with(
            &f(json!({"container_registry_tags": {"$ne": "ai"}})),
            &TranslateOptions::DYNALITE,
        )
        .unwrap();
        assert_eq!(fe.expression, "NOT #n0 = :v0");
    }

    #[test]
    fn negation_of_an_inexact_translation_pushes_down_nothing() {
        assert_eq!(
            translate(&f(json!({"a": {"$not": {"$regex": "b.*c"}}}))),
            None
        );
        assert_eq!(
            translate(&f(json!({"$nor": [{"a": {"$elemMatch": {"$gt": 1}}}]}))),
            None
        );
        // In an AND, the other parts are still pushed down.
        let fe = tr(json!({"b": 1, "a": {"$not": {"$regex": "b.*c"}}}));
        assert!(fe.names.values().all(|n| n == "b"));
        assert!(!fe.exact);
    }

    #[test]
    fn or_with_an_untranslatable_branch_pushes_down_nothing() {
        assert_eq!(
            translate(&f(
                json!({"$or": [{"a": 1}, {"b": {"$regex": "x", "$options": "i"}}]})
            )),
            None
        );
    }

    #[test]
    fn ranges_keep_lists() {
        let fe = tr(json!({"container_registry_version": {"$gt": 3}}));
        assert_eq!(fe.expression, "#n0 > :v0 OR attribute_type(#n0, :v1)");
        assert!(!fe.exact);
        let fe = tr(json!({"n": {"$gt": "5"}}));
        assert_eq!(fe.values[":v0"], json!("5"));
        // Beyond 2^53 numbers are not pushed down.
        assert_eq!(
            translate(&f(json!({"n": {"$gt": 9007199254740993u64}}))),
            None
        );
        // Only null compares with null; only booleans with booleans.
        let fe = tr(json!({"n": {"$gt": null}}));
        assert_eq!(
            fe.expression,
            "attribute_exists(#n0) AND attribute_not_exists(#n0)"
        );
        assert!(fe.exact);
        let fe = tr(json!({"n": {"$gt": false}}));
        assert!(fe.expression.starts_with("#n0 = :v0"));
        assert_eq!(fe.values[":v0"], json!(true));
    }

    #[test]
    fn numbers_are_normalized_and_zero_uses_between() {
        let fe = tr(json!({"n": 1.0}));
        assert_eq!(fe.values[":v0"], json!(1));
        let fe = tr(json!({"n": 0}));
        assert!(
            fe.expression.starts_with("#n0 BETWEEN :v0 AND :v0"),
            "{}",
            fe.expression
        );
        check_placeholders(&fe);
    }

    #[test]
    fn in_is_split_in_chunks_of_100() {
        let values: Vec<Value> = (1..=250).map(|i| json!(format!("t{i}"))).collect();
        let filter = f(json!({"t": {"$in": values}}));
        let fe = translate_with(
            &filter,
            &TranslateOptions {
                max_expression_len: 1 << 20,
                ..TranslateOptions::DYNAMODB
            },
        )
        .unwrap();
        check_placeholders(&fe);
        assert_eq!(fe.expression.matches(" IN (").count(), 3);
        let approx = approx_filter(&filter, &TranslateOptions::DYNAMODB);
        fn max_in(e: &Expr) -> usize {
            match e {
                Expr::In(_, vs) => vs.len(),
                Expr::And(xs) | Expr::Or(xs) => xs.iter().map(max_in).max().unwrap_or(0),
                Expr::Not(x) => max_in(x),
                _ => 0,
            }
        }
        assert_eq!(max_in(&approx.sup), 100);
    }

    #[test]
    fn long_translations_are_weakened_to_fit_never_dropped() {
        let values: Vec<Value> = (1..=1000).map(|i| json!(format!("tag-{i}"))).collect();
        let filter = f(json!({"tags": {"$in": values}, "b": "x"}));
        let fe = translate(&filter).unwrap();
        check_placeholders(&fe);
        assert!(fe.expression.len() <= 4096, "{}", fe.expression.len());
        assert!(!fe.exact);
        // Every item with one of those tags still passes.
        let approx_ok = |doc: &Value| filter.matches(doc);
        for doc in [
            json!({"tags": ["tag-999"], "b": "x"}),
            json!({"tags": "tag-5", "b": "x"}),
        ] {
            assert!(approx_ok(&doc));
        }
        // A negation too long to push down becomes nothing, not an error.
        let filter = f(
            json!({"tags": {"$nin": (1..=1000).map(|i| json!(format!("tag-{i}"))).collect::<Vec<_>>()}}),
        );
        let fe = translate(&filter);
        assert!(fe.as_ref().is_none_or(|fe| fe.expression.len() <= 4096));
        for len in [40, 100, 300] {
            let opts = TranslateOptions {
                max_expression_len: len,
                ..TranslateOptions::DYNAMODB
            };
            let filter = f(json!({"a": "x", "b": {"$in": ["p", "q", "r"]}, "c.d": {"$gte": 3}}));
            if let Some(fe) = translate_with(&filter, &opts) {
                assert!(fe.expression.len() <= len);
                check_placeholders(&fe);
            }
        }
    }

    #[test]
    fn regex_prefixes() {
        assert_eq!(
            literal_regex("^abc"),
            Some(Literal {
                text: "abc".into(),
                anchored: true,
                whole: true
            })
        );
        assert_eq!(
            literal_regex("^ab?c"),
            Some(Literal {
                text: "a".into(),
                anchored: true,
                whole: false
            })
        );
        assert_eq!(
            literal_regex("^a\\.b.*"),
            Some(Literal {
                text: "a.b".into(),
                anchored: true,
                whole: false
            })
        );
        assert_eq!(
            literal_regex("^a\\d"),
            Some(Literal {
                text: "a".into(),
                anchored: true,
                whole: false
            })
        );
        assert_eq!(
            literal_regex("ab"),
            Some(Literal {
                text: "ab".into(),
                anchored: false,
                whole: true
            })
        );
        assert_eq!(literal_regex("a.b"), None);
        assert_eq!(literal_regex("^a|b"), None);
        let fe = tr(json!({"n": {"$regex": "^reg"}}));
        check_placeholders(&fe);
        assert_eq!(
            fe.expression,
            "attribute_type(#n0, :v0) AND begins_with(#n0, :v1) OR attribute_type(#n0, :v2)"
        );
        // Case-insensitive and multi-line patterns are not pushed down.
        assert_eq!(
            translate(&f(json!({"n": {"$regex": "^reg", "$options": "i"}}))),
            None
        );
        assert_eq!(
            translate(&f(json!({"n": {"$regex": "^reg", "$options": "m"}}))),
            None
        );
        assert!(translate(&f(json!({"n": {"$regex": "^reg", "$options": "s"}}))).is_some());
    }

    #[test]
    fn size_and_exists() {
        let fe = tr(json!({"t": {"$size": 2}}));
        assert_eq!(
            fe.expression,
            "attribute_type(#n0, :v0) AND size(#n0) = :v1"
        );
        assert!(fe.exact);
        let fe = tr(json!({"t": {"$exists": false}}));
        assert_eq!(fe.expression, "attribute_not_exists(#n0)");
        assert!(fe.exact);
        let fe = tr(json!({"t.u": {"$exists": false}}));
        assert!(!fe.exact);
        check_placeholders(&fe);
    }

    #[test]
    fn all_with_no_values_matches_nothing() {
        let fe = tr(json!({"t": {"$all": []}}));
        assert!(fe.exact);
        check_placeholders(&fe);
    }

    // -- the property ------------------------------------------------------------------------

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(json!(true)),
            Just(json!(false)),
            Just(json!(0)),
            Just(json!(-0.0)),
            Just(json!(1)),
            Just(json!(1.0)),
            Just(json!(2.5)),
            Just(json!(-3)),
            Just(json!(9007199254740993u64)),
            Just(json!("")),
            Just(json!("a")),
            Just(json!("ab")),
            Just(json!("b")),
            Just(json!("L")),
            Just(json!("\u{10000}")),
            Just(json!("\u{FFFD}")),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("0"), Just("1")].prop_map(str::to_string)
    }

    fn doc_value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn doc() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(key(), doc_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(key(), 1..4).prop_map(|v| v.join("."))
    }

    fn operand() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => scalar(),
            1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
            1 => prop::collection::btree_map(key(), scalar(), 0..2)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    }

    fn comparable() -> impl Strategy<Value = Value> {
        scalar()
    }

    fn op_object() -> impl Strategy<Value = Value> {
        prop_oneof![
            operand().prop_map(|v| json!({"$eq": v})),
            operand().prop_map(|v| json!({"$ne": v})),
            comparable().prop_map(|v| json!({"$gt": v})),
            comparable().prop_map(|v| json!({"$gte": v})),
            comparable().prop_map(|v| json!({"$lt": v})),
            comparable().prop_map(|v| json!({"$lte": v})),
            prop::collection::vec(operand(), 0..4).prop_map(|v| json!({"$in": v})),
            prop::collection::vec(operand(), 0..4).prop_map(|v| json!({"$nin": v})),
            prop::collection::vec(operand(), 0..3).prop_map(|v| json!({"$all": v})),
            prop::bool::ANY.prop_map(|b| json!({"$exists": b})),
            (0u64..3).prop_map(|n| json!({"$size": n})),
            prop_oneof![
                Just("^a"),
                Just("^ab$"),
                Just("a"),
                Just("b"),
                Just("^"),
                Just("^a.*"),
                Just("^a?b"),
                Just("^$")
            ]
            .prop_map(|p| json!({"$regex": p})),
            comparable().prop_map(|v| json!({"$not": {"$gt": v}})),
            operand().prop_map(|v| json!({"$not": {"$eq": v}})),
            comparable().prop_map(|v| json!({"$elemMatch": {"$gte": v}})),
            operand().prop_map(|v| json!({"$elemMatch": {"a": v}})),
        ]
    }

    fn field_filter() -> impl Strategy<Value = Value> {
        (path(), prop_oneof![operand(), op_object()]).prop_map(|(p, c)| {
            let mut m = serde_json::Map::new();
            m.insert(p, c);
            Value::Object(m)
        })
    }

    fn filter() -> impl Strategy<Value = Value> {
        field_filter().prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$and": v})),
                prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$or": v})),
                prop::collection::vec(inner, 1..3).prop_map(|v| json!({"$nor": v})),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        #[test]
        fn translation_never_drops_a_match(fj in filter(), docs in prop::collection::vec(doc(), 1..6)) {
            let filter = Filter::parse(&fj).unwrap();
            for (opts, dynalite) in [(TranslateOptions::DYNAMODB, false), (TranslateOptions::DYNALITE, true)] {
                let approx = approx_filter(&filter, &opts);
                for d in &docs {
                    let m = filter.matches(d);
                    let sup = sim(&approx.sup, d, dynalite);
                    let sub = sim(&approx.sub, d, dynalite);
                    prop_assert!(!m || sup, "dropped {d} for {fj}: sup {:?}", approx.sup);
                    prop_assert!(!sub || m, "sub kept {d} for {fj}: sub {:?}", approx.sub);
                    if approx.exact {
                        prop_assert_eq!(m, sup, "inexact 'exact' for {} on {}", fj, d);
                    }
                }
                // The final, possibly weakened, expression too.
                let small = TranslateOptions { max_expression_len: 120, ..opts };
                for o in [opts, small] {
                    if let Some(fe) = translate_with(&filter, &o) {
                        check_placeholders(&fe);
                        prop_assert!(fe.expression.len() <= o.max_expression_len);
                    }
                }
                let mut sup = approx.sup.clone();
                for _ in 0..3 {
                    sup = weaken(sup);
                    for d in &docs {
                        prop_assert!(!filter.matches(d) || sim(&sup, d, dynalite));
                    }
                }
            }
        }
    }
}
