//! Manifest reads from real registries: open, Basic (htpasswd) and Bearer (a real token flow).

use registry_db::health::{ImageStatus, Platform, Read};

use super::{prober, read};
use crate::support::oci_images::{OCI_INDEX, OCI_MANIFEST, OciLayout, push};
use crate::support::oci_registry::{Mode, OciRegistry};
use crate::support::token_server::token_server;

fn platforms() -> Vec<Platform> {
    vec![
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        },
    ]
}

#[tokio::test]
async fn an_open_registry_serves_a_manifest_and_an_index() {
    let registry = OciRegistry::start(Mode::Open);
    let layout = OciLayout::new();
    let plain = layout.add_manifest("plain", &[("org.example.note", "hello")]);
    let index = layout.add_index("multi");
    push(&layout, "plain", &registry.url, "team/app:1.0", None);
    push(&layout, "multi", &registry.url, "team/app:multi", None);
    let p = prober(5000);

    let head = read(&p, &registry.url, "team/app", "1.0", Read::Head).await;
    assert_eq!(head.status, ImageStatus::Found, "{head:#?}");
    assert_eq!(head.digest.as_deref(), Some(plain.digest.as_str()));
    assert_eq!(head.media_type.as_deref(), Some(OCI_MANIFEST));
    assert_eq!(head.platforms, None);
    assert_eq!(
        head.url,
        format!("{}/v2/team/app/manifests/1.0", registry.url)
    );

    let multi = read(&p, &registry.url, "team/app", "multi", Read::Head).await;
    assert_eq!(multi.status, ImageStatus::Found, "{multi:#?}");
    assert_eq!(multi.digest.as_deref(), Some(index.digest.as_str()));
    assert_eq!(multi.media_type.as_deref(), Some(OCI_INDEX));
    assert_eq!(multi.platforms, None, "a HEAD reads no platforms");

    let with = read(&p, &registry.url, "team/app", "multi", Read::Platforms).await;
    assert_eq!(with.status, ImageStatus::Found, "{with:#?}");
    assert_eq!(with.digest.as_deref(), Some(index.digest.as_str()));
    assert_eq!(with.platforms, Some(platforms()));

    // a plain manifest has no platforms to list, even when asked
    let plain_get = read(&p, &registry.url, "team/app", "1.0", Read::Platforms).await;
    assert_eq!(plain_get.status, ImageStatus::Found);
    assert_eq!(plain_get.platforms, None);

    // by digest, and its annotations
    let by_digest = read(
        &p,
        &registry.url,
        "team/app",
        &plain.digest,
        Read::Annotations,
    )
    .await;
    assert_eq!(by_digest.status, ImageStatus::Found, "{by_digest:#?}");
    assert_eq!(
        by_digest
            .annotations
            .unwrap()
            .get("org.example.note")
            .map(String::as_str),
        Some("hello")
    );

    for (repo, tag) in [("team/app", "nope"), ("team/other", "1.0")] {
        let missing = read(&p, &registry.url, repo, tag, Read::Head).await;
        assert_eq!(missing.status, ImageStatus::NotFound, "{missing:#?}");
        assert_eq!(missing.status_code, Some(404));
        assert!(missing.error.unwrap().contains("no manifest"));
    }
}

#[tokio::test]
async fn a_basic_challenge_means_credentials_required_and_none_are_sent() {
    let registry = OciRegistry::start(Mode::htpasswd());
    let result = read(&prober(5000), &registry.url, "team/app", "1.0", Read::Head).await;
    assert_eq!(
        result.status,
        ImageStatus::CredentialsRequired,
        "{result:#?}"
    );
    assert_eq!(result.status_code, Some(401));
    assert!(result.error.unwrap().contains("Basic credentials"));
}

// Multi-threaded: skopeo (a blocking child process) talks to the token server, a task of this
// runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anonymous_bearer_flow_reads_a_token_registry() {
    let tokens = token_server().await;
    let registry = OciRegistry::start(tokens.mode());
    let layout = OciLayout::new();
    let plain = layout.add_manifest("plain", &[]);
    let index = layout.add_index("multi");
    for repo in ["team/app", "private/app", "secret/app"] {
        push(
            &layout,
            "plain",
            &registry.url,
            &format!("{repo}:1.0"),
            Some("pusher:pw"),
        );
    }
    push(
        &layout,
        "multi",
        &registry.url,
        "team/app:multi",
        Some("pusher:pw"),
    );
    let pushes = tokens.requests().len();
    let p = prober(5000);

    let head = read(&p, &registry.url, "team/app", "1.0", Read::Head).await;
    assert_eq!(
        head.status,
        ImageStatus::Found,
        "{head:#?}\n{}",
        registry.log()
    );
    assert_eq!(head.digest.as_deref(), Some(plain.digest.as_str()));
    let with = read(&p, &registry.url, "team/app", "multi", Read::Platforms).await;
    assert_eq!(with.status, ImageStatus::Found, "{with:#?}");
    assert_eq!(with.digest.as_deref(), Some(index.digest.as_str()));
    assert_eq!(with.platforms, Some(platforms()));

    // The realm was asked anonymously, for read access to that repository only, once per read.
    let asked: Vec<String> = tokens.requests()[pushes..].to_vec();
    assert_eq!(asked.len(), 2, "{asked:#?}");
    for head in &asked {
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("\r\nauthorization:"), "{head}");
        assert!(!lower.contains("\r\ncookie:"), "{head}");
        assert!(
            head.starts_with(
                "GET /token?service=registry-db-test-registry&scope=repository%3Ateam%2Fapp%3Apull "
            ),
            "{head}"
        );
    }

    // A realm that refuses, and a token the registry refuses: credentials required.
    let refused = read(&p, &registry.url, "private/app", "1.0", Read::Head).await;
    assert_eq!(
        refused.status,
        ImageStatus::CredentialsRequired,
        "{refused:#?}"
    );
    assert!(
        refused
            .error
            .as_deref()
            .unwrap()
            .contains("refused an anonymous token"),
        "{refused:#?}"
    );
    let useless = read(&p, &registry.url, "secret/app", "1.0", Read::Head).await;
    assert_eq!(
        useless.status,
        ImageStatus::CredentialsRequired,
        "{useless:#?}"
    );
    assert_eq!(useless.status_code, Some(401));
    assert!(
        useless
            .error
            .as_deref()
            .unwrap()
            .contains("to the anonymous token"),
        "{useless:#?}"
    );

    let missing = read(&p, &registry.url, "team/app", "nope", Read::Head).await;
    assert_eq!(missing.status, ImageStatus::NotFound, "{missing:#?}");
}
