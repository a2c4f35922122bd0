//! What pushing a filter down to DynamoDB saves: items DynamoDB returns against items it scans, for
//! a selective filter over a few thousand entries on dynalite. The README quotes this test's output.

mod support;

use registry_db::domain::entry::ContainerRegistry;
use registry_db::domain::service::Registry;
use registry_db::query::Filter;
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
            let chunk = store.scan(&filter, after.as_deref(), 1000).await.unwrap();
            scanned += chunk.scanned;
            returned += chunk.candidates.len();
            match chunk.last_key {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        let registry = Registry::new(store.clone(), support::loopback_prober(100));
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
