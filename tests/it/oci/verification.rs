//! Reading verification proofs (`Catalog::read_proof`, `domain::verification`) from a real
//! registry: a proof pushed by skopeo under the entry's image prefix, one with the wrong
//! annotation, an expired challenge, one issued for another entry, and a proof deleted before
//! two sweeps. (Storing challenges single-use and the managed field are not wired yet.)

use chrono::Utc;
use registry_db::domain::catalog::Catalog;
use registry_db::domain::verification::{ANNOTATION, Challenge, SweepVerdict, after_sweep};
use registry_db::error::AppError;
use serde_json::json;

use crate::support::oci_images::{OciLayout, push};
use crate::support::oci_registry::{Mode, OciRegistry};
use crate::support::{self, loopback_prober};

fn refused_rule(e: AppError) -> &'static str {
    match e {
        AppError::BadRequest { code, message } => {
            assert!(message.contains(code), "{message}");
            code
        }
        other => panic!("not a refusal: {other:?}"),
    }
}

#[tokio::test]
async fn a_proof_under_the_image_prefix_verifies_and_every_refusal_names_its_rule() {
    support::require_loopback_only_network();
    let registry = OciRegistry::start(Mode::Open);
    let host = registry.url.strip_prefix("http://").unwrap().to_owned();
    let (store, _dir) = support::embedded_store();
    let catalog = Catalog::new(store, loopback_prober(5000));
    let entry = catalog
        .create(json!({
            "container_registry_name": "alice's",
            "container_registry_public_url": registry.url,
            "container_registry_image_prefix": format!("{host}/alice"),
        }))
        .await
        .unwrap();
    let id = entry.container_registry_id.clone();
    let now = Utc::now();

    // the right proof
    let good = Challenge::generate(now);
    let layout = OciLayout::new();
    let proof = layout.add_manifest("good", &[(ANNOTATION, good.reveal())]);
    let dest = format!("alice/registry-db-verification:{}", good.tag);
    push(&layout, "good", &registry.url, &dest, None);
    let record = good.record(&id);
    let verified = catalog
        .read_proof(&id, &record, good.reveal())
        .await
        .unwrap();
    assert_eq!(verified.digest, proof.digest);
    assert_eq!(
        verified.reference,
        format!("{host}/alice/registry-db-verification:{}", good.tag)
    );

    // the challenge must be this entry's, unexpired, and the one offered
    let mut expired = record.clone();
    expired.expires_at = now - chrono::Duration::seconds(1);
    let e = catalog
        .read_proof(&id, &expired, good.reveal())
        .await
        .unwrap_err();
    assert_eq!(refused_rule(e), "challenge-expired");
    let other = Challenge::generate(now);
    let e = catalog
        .read_proof(&id, &record, other.reveal())
        .await
        .unwrap_err();
    assert_eq!(refused_rule(e), "challenge-unknown");
    let elsewhere = good.record("another-entry");
    let e = catalog
        .read_proof(&id, &elsewhere, good.reveal())
        .await
        .unwrap_err();
    assert_eq!(refused_rule(e), "challenge-entry");

    // a proof whose annotation is another challenge's
    let wrong = Challenge::generate(now);
    layout.add_manifest("wrong", &[(ANNOTATION, other.reveal())]);
    push(
        &layout,
        "wrong",
        &registry.url,
        &format!("alice/registry-db-verification:{}", wrong.tag),
        None,
    );
    let e = catalog
        .read_proof(&id, &wrong.record(&id), wrong.reveal())
        .await
        .unwrap_err();
    assert_eq!(refused_rule(e), "proof-annotation");
    // and no proof at all
    let none = Challenge::generate(now);
    let e = catalog
        .read_proof(&id, &none.record(&id), none.reveal())
        .await
        .unwrap_err();
    assert_eq!(refused_rule(e), "proof-not-found");

    // the proof deleted: the next two sweeps miss it, and the second removes the verification
    let url = format!(
        "{}/v2/alice/registry-db-verification/manifests/{}",
        registry.url, proof.digest
    );
    let status = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .delete(&url)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 202, "DELETE {url}");
    let mut misses = 0;
    let mut verdicts = Vec::new();
    for _ in 0..2 {
        let found = catalog
            .read_proof(&id, &record, good.reveal())
            .await
            .is_ok();
        let verdict = after_sweep(found, misses);
        if let SweepVerdict::Missed(n) = verdict {
            misses = n;
        }
        verdicts.push(verdict);
    }
    assert_eq!(verdicts, [SweepVerdict::Missed(1), SweepVerdict::Remove]);
}
