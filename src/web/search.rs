//! A search as the page's URL carries it (`/?q=...&tag=...&registry_type=...`), and the filter it
//! becomes. The filter is built as a JSON tree in Rust and parsed by the same `Filter::parse` as the
//! API's, so every limit of the query language applies here in the same one place, and user input
//! is only ever a JSON string value: words become escaped regexes, never filter syntax.

use serde_json::{Map, Value, json};

use crate::domain::catalog::NEVER_CHECKED;
use crate::domain::entry::{
    HEALTH, MAX_KEY_CHARS, MAX_TAG_CHARS, MAX_TAGS, METADATA, NAME, RegistryType, STORAGE_INFO,
    StorageType, TAGS,
};
use crate::domain::words;
use crate::error::AppError;
use crate::health::HealthStatus;
use crate::query::Filter;

/// The registry types, storage types and health values a search can ask for, in display order.
pub const REGISTRY_TYPES: [RegistryType; 2] = [RegistryType::Aios, RegistryType::External];
pub const STORAGE_TYPES: [StorageType; 4] = [
    StorageType::S3,
    StorageType::ObjectStore,
    StorageType::Fs,
    StorageType::Unknown,
];
/// Each with the words a person reads for it, on a card's badge, in the select and on an entry's page.
pub const HEALTH_VALUES: [(&str, &str); 5] = [
    ("healthy", "healthy"),
    ("auth_required", "needs credentials"),
    ("not_registry", "not a registry"),
    ("unreachable", "unreachable"),
    (NEVER_CHECKED, "never checked"),
];

/// The words for a health value (a verdict's wire spelling, or [`NEVER_CHECKED`]).
pub fn health_label(value: &str) -> &'static str {
    HEALTH_VALUES
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("never checked", |(_, label)| label)
}

pub use crate::domain::catalog::{registry_type_str, storage_type_str};

/// Most tags one search selects: an `$all` of more tags than an entry may carry matches nothing.
pub const MAX_SEARCH_TAGS: usize = MAX_TAGS;
/// Longest name words (`q`) and metadata value, in characters.
pub const MAX_SEARCH_TEXT_CHARS: usize = 256;
/// Longest search as its query string (form-encoded, without the cursor). Every facet link of a
/// page repeats the search, so this bounds each link, and with the page's fixed number of links
/// (see `web::FACET_TAGS_SHOWN`), the page.
pub const MAX_SEARCH_BYTES: usize = 4096;
/// Longest cursor a page accepts (the service's own are under 200 bytes).
pub const MAX_CURSOR_BYTES: usize = 1024;
/// Characters of a visitor's value quoted back in an error message.
const QUOTED_CHARS: usize = 40;

/// What a visitor asked for. Every field is as typed; `filter()` checks them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// Words that must all occur in the name (case-insensitive).
    pub q: String,
    /// Tags that must all be present (`tag` may repeat in the URL).
    pub tags: Vec<String>,
    pub registry_type: String,
    pub storage_type: String,
    pub health: String,
    /// Least 30-day uptime, in percent as typed (0 to 100).
    pub min_uptime: String,
    pub meta_key: String,
    pub meta_value: String,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Why the URL is refused before it is read any further: it exceeds one of the bounds above.
    /// The search is then empty, so that the error page never repeats what was too large.
    pub refused: Option<String>,
}

fn bad(message: String) -> AppError {
    AppError::BadRequest {
        code: "invalid_search",
        message,
    }
}

/// At most [`QUOTED_CHARS`] characters of `value`, debug-quoted, for an error message.
fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        Some((i, _)) => format!("{:?}...", &value[..i]),
        None => format!("{value:?}"),
    }
}

impl Search {
    /// Reads the query string. Unknown parameters are ignored; empty ones mean "any". A URL past
    /// one of the bounds ([`MAX_SEARCH_TAGS`], ...) gives an empty search that is `refused`; it
    /// stops being read at the first bound it exceeds.
    pub fn from_query(query: Option<&str>) -> Search {
        let mut s = Search::default();
        if let Err(why) = s.read(query.unwrap_or_default()) {
            return Search {
                refused: Some(why),
                ..Search::default()
            };
        }
        s
    }

    fn read(&mut self, query: &str) -> Result<(), String> {
        let text = |name: &str, value: &str, max: usize| {
            if value.chars().count() > max {
                Err(format!("{name} must be at most {max} characters"))
            } else {
                Ok(value.to_string())
            }
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "q" => self.q = text("the name words", value, MAX_SEARCH_TEXT_CHARS)?,
                "tag" if !value.is_empty() && !self.tags.iter().any(|t| t == value) => {
                    if self.tags.len() == MAX_SEARCH_TAGS {
                        return Err(format!(
                            "a search may select at most {MAX_SEARCH_TAGS} tags (an entry carries \
                             at most {MAX_TAGS})"
                        ));
                    }
                    self.tags.push(text("each tag", value, MAX_TAG_CHARS)?);
                }
                // Checked against their few values by `filter`; bounded here by the whole length.
                "registry_type" => self.registry_type = value.to_string(),
                "storage_type" => self.storage_type = value.to_string(),
                "health" => self.health = value.to_string(),
                "min_uptime" => self.min_uptime = value.to_string(),
                "meta_key" => self.meta_key = text("the metadata key", value, MAX_KEY_CHARS)?,
                "meta_value" => {
                    self.meta_value = text("the metadata value", value, MAX_SEARCH_TEXT_CHARS)?;
                }
                "cursor" if !value.is_empty() => {
                    if value.len() > MAX_CURSOR_BYTES {
                        return Err(format!(
                            "cursor is longer than {MAX_CURSOR_BYTES} bytes; pass next_cursor \
                             from the previous page unchanged"
                        ));
                    }
                    self.cursor = Some(value.to_string());
                }
                _ => {}
            }
            // Checked as it grows, so that reading stops as soon as the search is too long.
            if self.encoded_len() > MAX_SEARCH_BYTES {
                return Err(format!(
                    "the search is longer than {MAX_SEARCH_BYTES} bytes as a URL; search with fewer \
                     or shorter terms"
                ));
            }
        }
        Ok(())
    }

    /// `query_string().len()`, without building it.
    fn encoded_len(&self) -> usize {
        // What `form_urlencoded` makes of each byte: itself, `+` for a space, else `%XX`.
        let form_len = |v: &str| {
            v.bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' | b' ' => 1,
                    _ => 3,
                })
                .sum::<usize>()
        };
        let pairs = self.pairs().filter(|(_, v)| !v.is_empty());
        let (count, len) = pairs.fold((0usize, 0), |(n, len), (k, v)| {
            (n + 1, len + k.len() + 1 + form_len(v))
        });
        // The `&` between pairs.
        len + count.saturating_sub(1)
    }

    /// The filter this search stands for, checked by the query language's parser.
    pub fn filter(&self) -> Result<Filter, AppError> {
        Ok(Filter::parse(&self.filter_json()?)?)
    }

    /// The filter as a JSON tree (what `POST /container_registries` would take for the same search).
    pub fn filter_json(&self) -> Result<Value, AppError> {
        if let Some(why) = &self.refused {
            return Err(AppError::BadRequest {
                code: "search_too_large",
                message: why.clone(),
            });
        }
        let mut clauses: Vec<Value> = Vec::new();
        // Each word of the search must begin a word of the name (`domain::words`): the regex the
        // name index answers. A search word with no letter or digit at all stays a plain
        // substring match (evaluated on every entry).
        let mut terms: Vec<String> = Vec::new();
        for word in self.q.split_whitespace() {
            let split = words::words(word);
            if split.is_empty() {
                clauses.push(field(
                    NAME,
                    json!({"$regex": regex::escape(word), "$options": "i"}),
                ));
            }
            for term in split {
                if !terms.contains(&term) {
                    clauses.push(field(
                        NAME,
                        json!({"$regex": words::word_pattern(&term), "$options": "i"}),
                    ));
                    terms.push(term);
                }
            }
        }
        if !self.tags.is_empty() {
            clauses.push(field(TAGS, json!({ "$all": self.tags })));
        }
        if !self.registry_type.is_empty() {
            if !REGISTRY_TYPES
                .iter()
                .any(|t| registry_type_str(*t) == self.registry_type)
            {
                return Err(bad(format!(
                    "registry type must be one of aios, external, not {}",
                    quoted(&self.registry_type)
                )));
            }
            clauses.push(field(
                &format!("{STORAGE_INFO}.registry_type"),
                json!(self.registry_type),
            ));
        }
        if !self.storage_type.is_empty() {
            if !STORAGE_TYPES
                .iter()
                .any(|t| storage_type_str(*t) == self.storage_type)
            {
                return Err(bad(format!(
                    "storage type must be one of s3, object-store, fs, unknown, not {}",
                    quoted(&self.storage_type)
                )));
            }
            clauses.push(field(
                &format!("{STORAGE_INFO}.storage_type"),
                json!(self.storage_type),
            ));
        }
        if !self.health.is_empty() {
            let path = format!("{HEALTH}.status");
            if self.health == NEVER_CHECKED {
                clauses.push(field(&path, json!({"$exists": false})));
            } else if [
                HealthStatus::Healthy,
                HealthStatus::AuthRequired,
                HealthStatus::NotRegistry,
                HealthStatus::Unreachable,
            ]
            .iter()
            .any(|h| h.as_str() == self.health)
            {
                clauses.push(field(&path, json!(self.health)));
            } else {
                return Err(bad(format!(
                    "health must be one of {}, not {}",
                    HEALTH_VALUES.map(|(v, _)| v).join(", "),
                    quoted(&self.health)
                )));
            }
        }
        if !self.min_uptime.is_empty() {
            match self.min_uptime.parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => clauses.push(field(
                    &format!("{HEALTH}.uptime_30d"),
                    json!({"$gte": p / 100.0}),
                )),
                _ => {
                    return Err(bad(format!(
                        "the least uptime must be a percentage from 0 to 100, not {}",
                        quoted(&self.min_uptime)
                    )));
                }
            }
        }
        if !self.meta_key.is_empty() || !self.meta_value.is_empty() {
            check_meta_key(&self.meta_key)?;
            let path = format!("{METADATA}.{}", self.meta_key);
            let cond = if self.meta_value.is_empty() {
                json!({"$exists": true})
            } else {
                // Typed into a text box, "7" or "true" may mean the number or the boolean stored.
                let mut any = vec![json!(self.meta_value)];
                if let Ok(v @ (Value::Number(_) | Value::Bool(_))) =
                    serde_json::from_str::<Value>(&self.meta_value)
                {
                    any.push(v);
                }
                json!({ "$in": any })
            };
            clauses.push(field(&path, cond));
        }
        Ok(match clauses.len() {
            0 => json!({}),
            1 => clauses.pop().unwrap_or_default(),
            _ => json!({ "$and": clauses }),
        })
    }

    /// The query string of this search (without the cursor), for links: facet toggles, paging.
    pub fn query_string(&self) -> String {
        encode(String::new(), self.pairs())
    }

    /// `/?...` for this search; `/` when it is empty.
    pub fn href(&self) -> String {
        href_of(self.pairs())
    }

    /// The search's pairs as a query string holds them: the one-value fields, then the tags.
    fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let tags = self.tags.iter().map(|t| ("tag", t.as_str()));
        self.fields().into_iter().chain(tags)
    }

    /// The one-value fields as they appear in a query string, in its order.
    fn fields(&self) -> [(&'static str, &str); 7] {
        [
            ("q", &self.q),
            ("registry_type", &self.registry_type),
            ("storage_type", &self.storage_type),
            ("health", &self.health),
            ("min_uptime", &self.min_uptime),
            ("meta_key", &self.meta_key),
            ("meta_value", &self.meta_value),
        ]
    }

    /// `toggle_tag(tag).href()`, without building the other search (a list page links 30 of
    /// them).
    pub fn href_toggling_tag(&self, tag: &str) -> String {
        let present = self.tags.iter().any(|t| t == tag);
        let tags = self
            .tags
            .iter()
            .map(String::as_str)
            .filter(|t| *t != tag)
            .chain((!present).then_some(tag));
        href_of(self.fields().into_iter().chain(tags.map(|t| ("tag", t))))
    }

    /// The href of this search (without its cursor) with `key` set to `value`, or cleared when it
    /// already holds `value`; and whether it did.
    pub fn href_choosing(&self, key: &str, value: &str) -> (String, bool) {
        let selected = self.fields().iter().any(|(k, v)| *k == key && *v == value);
        let fields = self.fields().map(|(k, v)| match (k == key, selected) {
            (true, true) => (k, ""),
            (true, false) => (k, value),
            _ => (k, v),
        });
        let tags = self.tags.iter().map(|t| ("tag", t.as_str()));
        (href_of(fields.into_iter().chain(tags)), selected)
    }

    /// The same search with `tag` added, or removed when present.
    pub fn toggle_tag(&self, tag: &str) -> Search {
        let mut s = self.without_cursor();
        if let Some(i) = s.tags.iter().position(|t| t == tag) {
            s.tags.remove(i);
        } else {
            s.tags.push(tag.to_string());
        }
        s
    }

    pub fn without_cursor(&self) -> Search {
        Search {
            cursor: None,
            ..self.clone()
        }
    }
}

/// `out` followed by the non-empty pairs, form-encoded.
fn encode<'k, 'v>(out: String, pairs: impl Iterator<Item = (&'k str, &'v str)>) -> String {
    let start = out.len();
    let mut out = url::form_urlencoded::Serializer::for_suffix(out, start);
    for (k, v) in pairs.filter(|(_, v)| !v.is_empty()) {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Room reserved for a link: most fit, so building one allocates once (growing them was 3% of the
/// list page's CPU, in reallocations).
const HREF_ROOM: usize = 96;

/// `/?k=v&...` of the non-empty pairs, `/` when there are none.
fn href_of<'k, 'v>(pairs: impl Iterator<Item = (&'k str, &'v str)>) -> String {
    let mut start = String::with_capacity(HREF_ROOM);
    start.push_str("/?");
    let href = encode(start, pairs);
    if href.len() == 2 { "/".into() } else { href }
}

fn field(path: &str, cond: Value) -> Value {
    let mut m = Map::new();
    m.insert(path.to_string(), cond);
    Value::Object(m)
}

/// A metadata key is one plain object key: not a path (no `.`), not an operator (no `$`).
fn check_meta_key(key: &str) -> Result<(), AppError> {
    if key.is_empty() {
        return Err(bad("a metadata value needs a metadata key".into()));
    }
    if key.contains('.') || key.contains('$') {
        return Err(bad(format!(
            "metadata key {} must be a plain key, without '.' or '$'",
            quoted(key)
        )));
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(bad(format!(
            "metadata key must be at most {MAX_KEY_CHARS} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(qs: &str) -> Search {
        Search::from_query(Some(qs))
    }

    #[test]
    fn words_begin_words_of_the_name() {
        let f = search("q=a.b+(c%5D+A+.").filter_json().unwrap();
        let w = |t: &str| json!({"container_registry_name": {"$regex": words::word_pattern(t), "$options": "i"}});
        assert_eq!(
            f,
            json!({"$and": [
                w("a"), w("b"), w("c"),
                {"container_registry_name": {"$regex": "\\.", "$options": "i"}},
            ]})
        );
        let filter = search("q=Reg-7").filter().unwrap();
        assert!(filter.matches(&json!({"container_registry_name": "my registry-77"})));
        assert!(filter.matches(&json!({"container_registry_name": "7 REGISTRY"})));
        assert!(!filter.matches(&json!({"container_registry_name": "myregistry-77"})));
        assert!(!filter.matches(&json!({"container_registry_name": "registry-x77"})));
    }

    #[test]
    fn operator_looking_input_stays_a_value() {
        let f = search("tag=%24where&meta_key=owner&meta_value=%7B%22%24ne%22%3A1%7D")
            .filter_json()
            .unwrap();
        assert_eq!(
            f,
            json!({"$and": [
                {"container_registry_tags": {"$all": ["$where"]}},
                {"container_registry_metadata.owner": {"$in": ["{\"$ne\":1}"]}},
            ]})
        );
    }

    #[test]
    fn tags_repeat_and_dedupe_and_round_trip_through_the_url() {
        let s = search("tag=ai&tag=gpu&tag=ai&tag=&q=x+y");
        assert_eq!(s.tags, ["ai", "gpu"]);
        assert_eq!(Search::from_query(Some(&s.query_string())), s);
        assert_eq!(s.toggle_tag("ai").tags, ["gpu"]);
        for tag in ["ai", "gpu", "new", "a b&c=d"] {
            assert_eq!(s.href_toggling_tag(tag), s.toggle_tag(tag).href(), "{tag}");
        }
        assert_eq!(s.toggle_tag("new").tags, ["ai", "gpu", "new"]);
    }

    #[test]
    fn choosing_a_value_sets_it_or_clears_it_and_drops_the_cursor() {
        let s = search("q=x&health=healthy&tag=ai&cursor=abc");
        let (href, selected) = s.href_choosing("health", "healthy");
        assert!(selected);
        assert_eq!(href, "/?q=x&tag=ai");
        let (href, selected) = s.href_choosing("health", "unreachable");
        assert!(!selected);
        assert_eq!(href, "/?q=x&health=unreachable&tag=ai");
        let (href, _) = search("registry_type=aios").href_choosing("registry_type", "aios");
        assert_eq!(href, "/");
        let (href, _) = search("").href_choosing("storage_type", "s3");
        assert_eq!(href, "/?storage_type=s3");
    }

    #[test]
    fn the_encoded_length_is_the_query_strings() {
        let s = search("q=a+b%C3%A9&tag=x%2Fy&tag=*-._~&meta_key=k&meta_value=%26%3D");
        assert_eq!(s.encoded_len(), s.query_string().len());
        assert_eq!(search("").encoded_len(), 0);
    }

    #[test]
    fn a_search_past_a_bound_is_refused_and_empty() {
        let tags = |n: usize| {
            (0..n)
                .map(|i| format!("tag=t{i}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(search(&tags(MAX_SEARCH_TAGS)).tags.len(), MAX_SEARCH_TAGS);
        let over = search(&format!("q=x&{}", tags(MAX_SEARCH_TAGS + 1)));
        assert_eq!(over.tags.len(), 0);
        assert_eq!(over.q, "");
        assert!(over.refused.as_deref().unwrap().contains("at most 48 tags"));
        let long_tag = format!("tag={}", "a".repeat(MAX_TAG_CHARS + 1));
        assert!(search(&long_tag).refused.is_some());
        let at = format!("tag={}", "a".repeat(MAX_TAG_CHARS));
        assert!(search(&at).refused.is_none());
        let q = |n: usize| format!("q={}", "a".repeat(n));
        assert!(search(&q(MAX_SEARCH_TEXT_CHARS)).refused.is_none());
        assert!(search(&q(MAX_SEARCH_TEXT_CHARS + 1)).refused.is_some());
        // Within each field's bound, past the whole length.
        let fat = (0..30)
            .map(|i| format!("tag={}{i}", "%26".repeat(MAX_TAG_CHARS - 2)))
            .collect::<Vec<_>>()
            .join("&");
        let refused = search(&fat).refused.unwrap();
        assert!(refused.contains("4096 bytes"), "{refused}");
        assert!(search(&fat).filter().is_err());
    }

    #[test]
    fn least_uptime_is_a_percentage_of_uptime_30d() {
        assert_eq!(
            search("min_uptime=99").filter_json().unwrap(),
            json!({"container_registry_health.uptime_30d": {"$gte": 0.99}})
        );
        assert_eq!(search("min_uptime=99").href(), "/?min_uptime=99");
        for bad in ["101", "-1", "abc", "NaN", "inf"] {
            assert!(
                search(&format!("min_uptime={bad}")).filter().is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn health_never_checked_is_absence() {
        assert_eq!(
            search("health=never_checked").filter_json().unwrap(),
            json!({"container_registry_health.status": {"$exists": false}})
        );
        assert!(search("health=sick").filter().is_err());
    }

    #[test]
    fn metadata_keys_must_be_plain_and_numbers_match_either_way() {
        for key in ["a.b", "$where", "a$b"] {
            let s = Search {
                meta_key: key.into(),
                meta_value: "x".into(),
                ..Search::default()
            };
            assert!(s.filter().is_err(), "{key}");
        }
        let f = search("meta_key=gpus&meta_value=7").filter().unwrap();
        assert!(f.matches(&json!({"container_registry_metadata": {"gpus": 7}})));
        assert!(f.matches(&json!({"container_registry_metadata": {"gpus": "7"}})));
        assert!(!f.matches(&json!({"container_registry_metadata": {"gpus": 8}})));
        let any = search("meta_key=owner").filter().unwrap();
        assert!(any.matches(&json!({"container_registry_metadata": {"owner": "x"}})));
        assert!(!any.matches(&json!({"container_registry_metadata": {}})));
    }

    #[test]
    fn types_are_checked_and_empty_search_matches_all() {
        assert!(
            search("registry_type=aios&storage_type=object-store")
                .filter()
                .is_ok()
        );
        assert!(search("registry_type=AIOS").filter().is_err());
        assert!(search("storage_type=ceph").filter().is_err());
        assert_eq!(search("").filter_json().unwrap(), json!({}));
        assert_eq!(search("cursor=abc&q=+").filter_json().unwrap(), json!({}));
    }
}
