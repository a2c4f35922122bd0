//! Memory stays bounded by the work a request does, not by how large entries are: maximal entries
//! (near the byte limit and at the limit on values, which cost many times their JSON size once
//! parsed), queried with filters that parse every one of them, on the real server. A query holds one
//! byte-bounded chunk of stored text, one parsed entry at a time and the page it fills.

use crate::support;

use serde_json::{Value, json};

const ENTRIES: usize = 150;
/// With the entry's own fields and the metadata object, at the limit on values per entry.
const VALUES: usize = registry_db::domain::size::MAX_VALUES - 20;

#[test]
fn queries_over_large_entries_of_tiny_values_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(&["--data", dir.path().to_str().unwrap()], &[]);
    let client = reqwest::blocking::Client::new();
    // 23 bytes of JSON per value: about 230 KB per entry, near the 256 KiB a request body may hold.
    let values = Value::Array(vec![json!("abcdefghijklmnopqrst"); VALUES]);
    for i in 0..ENTRIES {
        let body = json!({
            "container_registry_id": format!("big{i:03}"),
            "container_registry_name": format!("big-{i}"),
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": if i % 2 == 0 { json!(["even"]) } else { json!(["odd"]) },
            "container_registry_metadata": {"values": values},
        });
        let response = client
            .post(format!("{}/container_registry", server.base))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    }
    let before = support::peak_rss_kib(server.pid());

    // Filters that parse every entry: nothing matches; everything matches (paged); an indexed
    // filter that evaluates the rest.
    for filter in [
        json!({"container_registry_metadata.values": "z"}),
        json!({"container_registry_metadata.values": "abcdefghijklmnopqrst"}),
        json!({"container_registry_tags": "even", "container_registry_metadata.values": {"$size": VALUES}}),
    ] {
        let mut cursor: Option<String> = None;
        let mut returned = 0;
        loop {
            let url = match &cursor {
                Some(c) => format!("{}/container_registries?limit=1000&cursor={c}", server.base),
                None => format!("{}/container_registries?limit=1000", server.base),
            };
            let page: Value = client
                .post(url)
                .json(&filter)
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(page["success"], true, "{page}");
            returned += page["data"].as_array().unwrap().len();
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let expected = match filter.get("container_registry_tags") {
            Some(_) => ENTRIES / 2,
            None if filter["container_registry_metadata.values"] != "z" => ENTRIES,
            None => 0,
        };
        assert_eq!(returned, expected, "{filter}");
    }
    let peak = support::peak_rss_kib(server.pid());
    println!(
        "peak RSS {} MiB after the queries, {} MiB before",
        peak / 1024,
        before / 1024
    );
    // 150 entries of ~230 KB are 34 MB of JSON and over 100 MB parsed; a query may hold a 4 MiB
    // page, a 1 MiB chunk and one parsed entry.
    assert!(
        peak < 120 * 1024,
        "peak RSS {} MiB after the queries ({} MiB before them)",
        peak / 1024,
        before / 1024
    );
}
