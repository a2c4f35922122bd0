//! Image references as the OCI distribution spec writes them, parsed once ("parse, don't
//! validate"): an [`ImageRef`] is a name of path components, and a tag or a digest. A string that
//! is not one is refused with a sentence naming the part that is wrong; nothing else reaches a
//! registry's URL.
//!
//! - name components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, separated by `/`, the whole repository
//!   (image prefix's namespace included) at most [`MAX_NAME_BYTES`];
//! - tag `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`;
//! - digest `algorithm:hex`, `sha256` (64 lowercase hex digits) or `sha512` (128).
//!
//! `NAME` alone means `NAME:latest`, as every client reads it; `NAME:TAG@DIGEST` reads the digest.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A repository name (namespace and image) at most this long, as distribution enforces.
pub const MAX_NAME_BYTES: usize = 255;
/// A reference string at most this long (a name, a tag and a sha512 digest fit).
pub const MAX_REFERENCE_BYTES: usize = 512;

static COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$").expect("regex"));
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$").expect("regex"));

/// A reference that is not one, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReferenceError(pub String);

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Tag(String),
    Digest(String),
}

impl Target {
    /// The manifest path's last segment: the tag or the digest.
    pub fn as_str(&self) -> &str {
        match self {
            Target::Tag(t) | Target::Digest(t) => t,
        }
    }
}

/// `NAME:TAG` or `NAME@DIGEST`, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    name: String,
    target: Target,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, ReferenceError> {
        let err = |m: String| Err(ReferenceError(m));
        if text.is_empty() {
            return err(
                "the image reference is empty: give NAME:TAG or NAME@sha256:<64 hex digits>".into(),
            );
        }
        if text.len() > MAX_REFERENCE_BYTES {
            return err(format!(
                "the image reference is {} bytes, longer than the {MAX_REFERENCE_BYTES} a reference may be",
                text.len()
            ));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
            None => (text, None),
        };
        // A tag follows the last ':' after the last '/'.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !TAG.is_match(tag)
        {
            return err(format!(
                "the tag {:?} is not a tag: at most 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
                shown(tag)
            ));
        }
        check_name(name, "the image name")?;
        let target = match (digest, tag) {
            (Some(d), _) => Target::Digest(d),
            (None, Some(t)) => Target::Tag(t.to_owned()),
            (None, None) => Target::Tag("latest".to_owned()),
        };
        Ok(ImageRef {
            name: name.to_owned(),
            target,
        })
    }

    /// The name within the image prefix, e.g. `team/app`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The same name at another target (the verification proof's tag).
    pub fn with_target(name: &str, target: Target) -> Result<ImageRef, ReferenceError> {
        check_name(name, "the image name")?;
        if let Target::Tag(t) = &target
            && !TAG.is_match(t)
        {
            return Err(ReferenceError(format!(
                "the tag {:?} is not a tag",
                shown(t)
            )));
        }
        Ok(ImageRef {
            name: name.to_owned(),
            target,
        })
    }

    /// The repository inside the registry (`<prefix's namespace>/<name>`) for an entry's image
    /// prefix, e.g. prefix `reg.example.com:5000/team` and `app:1` give `team/app`.
    pub fn repository(&self, image_prefix: &str) -> Result<String, ReferenceError> {
        let namespace = prefix_namespace(image_prefix);
        let repo = if namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{namespace}/{}", self.name)
        };
        check_name(
            &repo,
            "the repository (the entry's image prefix and the name)",
        )?;
        Ok(repo)
    }

    /// `<image prefix>/NAME:TAG` or `<image prefix>/NAME@DIGEST`: what a user pulls.
    pub fn pull_reference(&self, image_prefix: &str) -> String {
        let prefix = image_prefix.trim_end_matches('/');
        let sep = match self.target {
            Target::Tag(_) => ':',
            Target::Digest(_) => '@',
        };
        if prefix.is_empty() {
            format!("{}{sep}{}", self.name, self.target.as_str())
        } else {
            format!("{prefix}/{}{sep}{}", self.name, self.target.as_str())
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pull_reference(""))
    }
}

/// The part of an image prefix after its host: `host:port/team/sub` -> `team/sub`. The first
/// component is a host when it holds a '.' or a ':' or is `localhost` (as Docker reads it).
pub fn prefix_namespace(image_prefix: &str) -> &str {
    let prefix = image_prefix.trim_matches('/');
    match prefix.split_once('/') {
        Some((first, rest)) if is_host(first) => rest,
        None if is_host(prefix) => "",
        _ => prefix,
    }
}

fn is_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn check_name(name: &str, what: &str) -> Result<(), ReferenceError> {
    if name.is_empty() {
        return Err(ReferenceError(format!("{what} is empty")));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ReferenceError(format!(
            "{what} is {} bytes, longer than the {MAX_NAME_BYTES} a repository name may be",
            name.len()
        )));
    }
    for component in name.split('/') {
        if !COMPONENT.is_match(component) {
            return Err(ReferenceError(format!(
                "{what} {:?} has the component {:?}, which is not a name component: lowercase letters and digits, separated by '.', '_', '__' or dashes",
                shown(name),
                shown(component)
            )));
        }
    }
    Ok(())
}

/// Checks `algorithm:hex` and returns it as given.
pub fn parse_digest(digest: &str) -> Result<String, ReferenceError> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(ReferenceError(format!(
            "the digest {:?} is not algorithm:hex (e.g. sha256:<64 hex digits>)",
            shown(digest)
        )));
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(ReferenceError(format!(
                "the digest algorithm {:?} is not one this service reads: sha256 or sha512",
                shown(algorithm)
            )));
        }
    };
    if hex.len() != want
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ReferenceError(format!(
            "the {algorithm} digest must be {want} lowercase hex digits, not {:?}",
            shown(hex)
        )));
    }
    Ok(digest.to_owned())
}

/// A quoted part of the input, cut so an error stays short.
fn shown(s: &str) -> String {
    super::limits::cap(s, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_in_the_spec_grammar_parse() {
        for (text, name, target) in [
            ("app:1.0", "app", Target::Tag("1.0".into())),
            ("team/app", "team/app", Target::Tag("latest".into())),
            (
                "a.b__c-d---e/f_g:_T.-x",
                "a.b__c-d---e/f_g",
                Target::Tag("_T.-x".into()),
            ),
            (&format!("app@{D}"), "app", Target::Digest(D.into())),
            (&format!("app:v1@{D}"), "app", Target::Digest(D.into())),
        ] {
            let r = ImageRef::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((r.name(), r.target()), (name, &target), "{text}");
        }
        let tag128 = format!("app:{}", "t".repeat(128));
        assert!(ImageRef::parse(&tag128).is_ok());
    }

    #[test]
    fn anything_else_is_refused_naming_the_part() {
        for (text, words) in [
            ("", "empty"),
            ("App:1", "component \"App\""),
            ("app/:1", "component \"\""),
            ("-app", "component \"-app\""),
            ("a..b", "component \"a..b\""),
            ("a___b", "component"),
            ("127.0.0.1:5000/app:1", "component \"127.0.0.1:5000\""),
            ("app:", "the tag \"\""),
            ("app:.x", "the tag \".x\""),
            ("app:a/b", "component"),
            (&format!("app:{}", "t".repeat(129)), "at most 128"),
            ("app@sha256:abc", "64 lowercase hex"),
            ("app@md5:abc", "algorithm \"md5\""),
            ("app@nodigest", "algorithm:hex"),
            (
                &format!("app@{}", D.to_uppercase().replace("SHA", "sha")),
                "lowercase hex",
            ),
            ("app:1?x=y", "the tag"),
            ("../etc/passwd", "component \"..\""),
            ("app%2F..", "component"),
            (&"a".repeat(600), "longer than the 512"),
            (&format!("{}:1", "a".repeat(256)), "longer than the 255"),
        ] {
            let err = ImageRef::parse(text).unwrap_err().0;
            assert!(err.contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_repository_joins_the_prefix_namespace() {
        let r = ImageRef::parse("app:1").unwrap();
        assert_eq!(r.repository("10.13.21.22:32633").unwrap(), "app");
        assert_eq!(
            r.repository("reg.example.com/team/x").unwrap(),
            "team/x/app"
        );
        assert_eq!(r.repository("localhost/team").unwrap(), "team/app");
        assert_eq!(r.repository("docker.io/alice/").unwrap(), "alice/app");
        assert!(
            r.repository("reg.example.com/Team")
                .unwrap_err()
                .0
                .contains("image prefix")
        );
        assert_eq!(
            r.pull_reference("10.13.21.22:32633"),
            "10.13.21.22:32633/app:1"
        );
        let d = ImageRef::parse(&format!("a/b@{D}")).unwrap();
        assert_eq!(d.pull_reference("h:1/"), format!("h:1/a/b@{D}"));
    }
}
