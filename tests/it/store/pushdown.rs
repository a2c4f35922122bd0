//! What pushing a filter down to DynamoDB saves: items DynamoDB returns against items it scans, for
//! a selective filter over a few thousand entries on dynalite. The README quotes this test's output.

use crate::support;

use registry_db::domain::catalog::Catalog;
use registry_db::domain::entry::ContainerRegistry;
use registry_db::query::Filter;
use registry_db::store::{Plan, ScanRequest};
use serde_json::json;

const ENTRIES: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selective_filter_is_evaluated_by_dynamodb_not_shipped_back() {
    let store = support::dynamo_store().await;
    for i in 0..ENTRIES {
        let tags = if i % 100 == 0 {
            json!(["gpu", "ai"])
        } else {
            json!(["cpu"])
        };
        let entry = ContainerRegistry::from_create(json!({
            "container_registry_id": format!("e{i:05}"),
            "container_registry_name": format!("registry-{i}"),
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": tags,
            "container_registry_metadata": {"region": if i % 3 == 0 { "eu-west-1" } else { "us-east-1" }, "gpus": i % 8},
            "container_registry_storage_info": {"storage_type": "s3", "storage_size": -1, "memory_size": 8192, "registry_type": "aios"},
        }))
        .unwrap();
        store.insert(&entry).await.unwrap();
    }
    // Filters on scalar fields: dynalite cannot test list membership (see store/dynamodb), so tag
    // filters are pushed down only against AWS itself.
    let filters = [
        json!({"container_registry_name": "registry-42"}),
        json!({"container_registry_name": {"$in": ["registry-1", "registry-2", "registry-3"]}}),
        json!({"container_registry_metadata.region": "eu-west-1", "container_registry_metadata.gpus": 7}),
        json!({"container_registry_metadata.gpus": {"$gte": 7}}),
    ];
    for filter_json in filters {
        let filter = Filter::parse(&filter_json).unwrap();
        let (mut scanned, mut returned, mut after) = (0usize, 0usize, None::<String>);
        loop {
            let chunk = store
                .scan(ScanRequest {
                    filter: &filter,
                    plan: &Plan::Scan,
                    after: after.as_deref(),
                    max_entries: 1000,
                    max_bytes: usize::MAX,
                })
                .await
                .unwrap();
            scanned += chunk.scanned;
            returned += chunk.candidates.len();
            match chunk.last_key {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        let registry = Catalog::new(store.clone(), support::loopback_prober(100));
        let page = registry.query(&filter, 1000, None).await.unwrap();
        println!(
            "pushdown {filter_json}: DynamoDB scanned {scanned}, returned {returned}, matches {}",
            page.entries.len()
        );
        assert_eq!(scanned, ENTRIES, "the scan examined every entry once");
        assert!(
            returned >= page.entries.len(),
            "the pushdown never drops a match: {filter_json}"
        );
        assert!(
            returned * 5 < scanned,
            "most entries stay in DynamoDB: {filter_json}"
        );
    }
}

#[tokio::test]
async fn filters_beyond_dynamodbs_expression_limits_push_down_less_instead_of_failing() {
    let store = support::dynamo_store().await;
    for i in 0..50 {
        let entry = ContainerRegistry::from_create(json!({
            "container_registry_id": format!("e{i:03}"),
            "container_registry_name": format!("registry-{i}"),
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_metadata": {"n": i},
        }))
        .unwrap();
        store.insert(&entry).await.unwrap();
    }
    let registry = Catalog::new(store, support::loopback_prober(100));
    // 1,000 IN operands (DynamoDB takes 100 per IN) and an expression far over 4 KB.
    let names: Vec<String> = (0..1000).map(|i| format!("registry-{}", i * 2)).collect();
    let long_key = "k".repeat(200);
    let filters = [
        (json!({"container_registry_name": {"$in": names}}), 25),
        (
            json!({"$or": (0..60).map(|i| json!({format!("container_registry_metadata.{long_key}{i}"): i})).chain([json!({"container_registry_metadata.n": 7})]).collect::<Vec<_>>()}),
            1,
        ),
        (
            json!({"$and": (0..40).map(|i| json!({"container_registry_metadata.n": {"$ne": i + 100}})).collect::<Vec<_>>()}),
            50,
        ),
    ];
    for (filter_json, expected) in filters {
        let filter = Filter::parse(&filter_json).unwrap();
        let page = registry
            .query(&filter, 1000, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.entries.len(), expected);
    }
}
