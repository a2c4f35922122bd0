//! What the templates show, computed from an entry: badges, times, commands, safe links. Every
//! string here is still raw user text; the templates escape it (askama escapes all `{{ }}` output
//! of `.html` templates, and nothing here is marked safe).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::cards::CardData;
use super::search::{health_label, registry_type_str, storage_type_str};
use crate::domain::catalog::NEVER_CHECKED;
use crate::domain::entry::ContainerRegistry;
use crate::health::{HealthStatus, ProbeResult};

/// Tags shown on a card; the rest are counted ("+3 more") and listed on the registry's page.
pub const CARD_TAGS: usize = 8;

/// A health badge: its CSS class (one per verdict), words, and how long ago.
pub struct Badge {
    pub class: &'static str,
    pub label: &'static str,
    /// "3 min ago"; empty when never checked.
    pub ago: String,
    /// The exact `checked_at`, for a tooltip and `<time datetime>`.
    pub checked_at: String,
}

/// The badge of a probe's verdict and when it ran (`checked_at`), or of an entry never checked.
pub fn badge(health: Option<(HealthStatus, &str)>, now: DateTime<Utc>) -> Badge {
    let Some((status, checked_at)) = health else {
        return Badge {
            class: NEVER_CHECKED,
            label: health_label(NEVER_CHECKED),
            ago: String::new(),
            checked_at: String::new(),
        };
    };
    Badge {
        class: status.as_str(),
        label: health_label(status.as_str()),
        ago: ago(checked_at, now),
        checked_at: checked_at.to_string(),
    }
}

/// [`badge`] of a stored probe result.
pub fn probe_badge(health: Option<&ProbeResult>, now: DateTime<Utc>) -> Badge {
    badge(health.map(|h| (h.status, h.checked_at.as_str())), now)
}

/// "just now", "42 s ago", "5 min ago", "3 h ago", "2 days ago"; empty if the time is unreadable.
pub fn ago(rfc3339: &str, now: DateTime<Utc>) -> String {
    let Ok(then) = DateTime::parse_from_rfc3339(rfc3339) else {
        return String::new();
    };
    let secs = (now - then.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        0..=4 => "just now".into(),
        5..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ if secs < 2 * 86_400 => "1 day ago".into(),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// One registry in the list, its text borrowed from the entry's parsed card.
pub struct Card<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub tags: &'a [String],
    pub more_tags: usize,
    pub registry_type: &'static str,
    pub storage_type: &'static str,
    pub image_prefix: &'a str,
    pub badge: Badge,
    /// "99.5 % up over 30 days", or empty before any history.
    pub uptime: String,
}

/// A share as a percentage a person reads: at most one decimal, never rounded up to 100.
pub fn percent(share: f64) -> String {
    let tenths = (share * 1000.0).floor() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0} %")
    } else {
        format!("{tenths:.1} %")
    }
}

impl<'a> Card<'a> {
    pub fn new(e: &'a CardData, now: DateTime<Utc>) -> Card<'a> {
        Card {
            id: &e.id,
            name: &e.name,
            tags: &e.tags[..e.tags.len().min(CARD_TAGS)],
            more_tags: e.tags.len().saturating_sub(CARD_TAGS),
            registry_type: e.storage.registry_type.map_or("", registry_type_str),
            storage_type: e.storage.storage_type.map_or("", storage_type_str),
            image_prefix: &e.image_prefix,
            badge: badge(
                e.health.as_ref().map(|h| (h.status, h.checked_at.as_str())),
                now,
            ),
            uptime: e
                .health
                .as_ref()
                .and_then(|h| h.uptime_30d)
                .map(|u| format!("{} up over 30 days", percent(u)))
                .unwrap_or_default(),
        }
    }
}

/// A key and a value as text, for the metadata, config and storage tables.
pub struct Row {
    pub key: String,
    pub value: String,
}

/// Strings as they are; anything else (numbers, booleans, nested objects) as compact JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn rows(map: &Map<String, Value>) -> Vec<Row> {
    map.iter()
        .map(|(k, v)| Row {
            key: k.clone(),
            value: value_text(v),
        })
        .collect()
}

/// The public URL as a link target, only when it is http or https (anything else is shown as text).
pub fn safe_link(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https").then(|| parsed.to_string())
}

/// The host (and port) that `docker login` and `insecure-registries` name: the image prefix up to
/// its first `/`.
pub fn registry_host(image_prefix: &str) -> &str {
    image_prefix.split('/').next().unwrap_or(image_prefix)
}

/// Whether the registry asks for credentials: its last probe got an auth challenge, or its owner
/// says so in the config (`auth_required: true`, as in the seed's example).
pub fn wants_credentials(e: &ContainerRegistry) -> bool {
    let probed = e
        .container_registry_health
        .as_ref()
        .is_some_and(|h| h.status == HealthStatus::AuthRequired);
    let declared = e.container_registry_config.get("auth_required") == Some(&Value::Bool(true));
    probed || declared
}

/// Plain HTTP: docker refuses it unless the host is listed in `insecure-registries`.
pub fn is_plain_http(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.scheme() == "http")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_reads_like_a_person_would_say_it() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ago("2026-01-02T00:00:00Z", now), "just now");
        assert_eq!(ago("2026-01-01T23:59:18Z", now), "42 s ago");
        assert_eq!(ago("2026-01-01T23:55:00.000Z", now), "5 min ago");
        assert_eq!(ago("2026-01-01T21:00:00Z", now), "3 h ago");
        assert_eq!(ago("2025-12-31T00:00:00Z", now), "2 days ago");
        assert_eq!(ago("yesterday", now), "");
    }

    #[test]
    fn only_http_and_https_become_links() {
        assert_eq!(
            safe_link("http://10.0.0.1:5000").as_deref(),
            Some("http://10.0.0.1:5000/")
        );
        assert!(safe_link("javascript:alert(1)").is_none());
        assert!(safe_link("data:text/html,x").is_none());
        assert!(safe_link("not a url").is_none());
    }

    #[test]
    fn host_is_the_prefix_before_the_first_slash() {
        assert_eq!(registry_host("10.13.21.22:32633"), "10.13.21.22:32633");
        assert_eq!(registry_host("ghcr.io/aios"), "ghcr.io");
    }
}
