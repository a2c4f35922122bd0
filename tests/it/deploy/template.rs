//! `template.yaml` routes exactly the routes the router serves (read from the OpenAPI document,
//! which is generated from the same route definitions as the router), with IAM auth on writes and
//! none on reads, and its tables have the key schemas the DynamoDB store uses.

use crate::support;

use std::collections::BTreeMap;

use serde_yaml::Value;

fn template() -> Value {
    template_named("template.yaml")
}

/// `template.yaml` (IAM writes) or `template-public.yaml` (public writes with owner tokens).
fn template_named(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// The HTTP routes of a template: (METHOD, path) -> authorizer.
fn routes_of(t: &Value) -> BTreeMap<(String, String), String> {
    let events = t["Resources"]["RegistryDbFunction"]["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    let mut routed = BTreeMap::new();
    for (name, event) in events {
        if event["Type"].as_str() != Some("HttpApi") {
            continue;
        }
        let p = &event["Properties"];
        let method = p["Method"].as_str().unwrap().to_uppercase();
        let path = p["Path"].as_str().unwrap().to_string();
        let authorizer = p["Auth"]["Authorizer"]
            .as_str()
            .unwrap_or_else(|| panic!("{name:?} names its authorizer"));
        assert!(
            routed
                .insert((method, path), authorizer.to_string())
                .is_none(),
            "{name:?} routes a route twice"
        );
    }
    routed
}

#[test]
fn the_public_template_routes_the_same_routes_without_iam_and_throttles_the_public_writes() {
    let iam = template();
    let public = template_named("template-public.yaml");
    let public_routes = routes_of(&public);
    assert_eq!(
        public_routes.keys().collect::<Vec<_>>(),
        routes_of(&iam).keys().collect::<Vec<_>>(),
        "both templates route the same routes"
    );
    assert!(
        public_routes.values().all(|a| a == "NONE"),
        "{public_routes:?}"
    );
    let env = &public["Resources"]["RegistryDbFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(env["REGISTRY_DB_WRITES"].as_str(), Some("owners"));
    // The IAM template's policy is a parameter (`!Ref WritePolicy`).
    let iam_env = &iam["Resources"]["RegistryDbFunction"]["Properties"]["Environment"]["Variables"];
    assert!(!iam_env["REGISTRY_DB_WRITES"].is_null());
    assert!(!iam_env["REGISTRY_DB_OPERATOR_PRINCIPALS"].is_null());
    assert_eq!(
        iam["Parameters"]["WritePolicy"]["Default"].as_str(),
        Some("owners")
    );
    // Every route anyone may write through (and the health check) has its own throttling.
    let settings = public["Resources"]["RegistryHttpApi"]["Properties"]["RouteSettings"]
        .as_mapping()
        .unwrap();
    let throttled: Vec<String> = settings
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let mut wanted: Vec<String> = served_routes()
        .into_iter()
        .filter(|(_, write)| *write)
        .map(|((m, p), _)| format!("{m} {p}"))
        .collect();
    wanted.push("GET /check_container_health/{id}".into());
    wanted.sort();
    let mut throttled_sorted = throttled.clone();
    throttled_sorted.sort();
    assert_eq!(throttled_sorted, wanted);
    for key in &throttled {
        assert!(
            !settings[key.as_str()]["ThrottlingRateLimit"].is_null(),
            "{key} has a rate"
        );
    }
    // The tables are the same.
    assert_eq!(
        public["Resources"]["RegistryTable"],
        iam["Resources"]["RegistryTable"]
    );
    assert_eq!(
        public["Resources"]["TagIndexTable"],
        iam["Resources"]["TagIndexTable"]
    );
}

/// (METHOD, path) -> write?
fn served_routes() -> BTreeMap<(String, String), bool> {
    let doc = serde_json::to_value(registry_db::api::openapi()).unwrap();
    let mut routes = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let write = op["security"].as_array().is_some_and(|reqs| {
                reqs.iter()
                    .any(|r| r.get(registry_db::api::WRITE_SECURITY).is_some())
            });
            routes.insert((method.to_uppercase(), path.clone()), write);
        }
    }
    // Served by the router beside the annotated routes: the document and the discovery page.
    routes.insert(("GET".into(), "/openapi.json".into()), false);
    for (method, path) in registry_db::web::ROUTES {
        routes.insert((method.into(), path.into()), false);
    }
    routes
}

#[test]
fn every_served_route_is_routed_with_the_right_auth_and_nothing_else() {
    let t = template();
    let events = t["Resources"]["RegistryDbFunction"]["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    let mut routed = BTreeMap::new();
    for (name, event) in events {
        if event["Type"].as_str() != Some("HttpApi") {
            continue;
        }
        let p = &event["Properties"];
        let method = p["Method"].as_str().unwrap().to_uppercase();
        let path = p["Path"].as_str().unwrap().to_string();
        let authorizer = p["Auth"]["Authorizer"]
            .as_str()
            .unwrap_or_else(|| panic!("{name:?} names its authorizer"));
        let write = match authorizer {
            "AWS_IAM" => true,
            "NONE" => false,
            other => panic!("{name:?}: unexpected authorizer {other}"),
        };
        assert!(
            routed.insert((method, path), write).is_none(),
            "{name:?} routes a route twice"
        );
    }
    assert_eq!(
        routed,
        served_routes(),
        "template routes (method, path) -> IAM auth, against the router"
    );
    let writes: Vec<_> = routed
        .iter()
        .filter(|(_, w)| **w)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        writes.len(),
        4,
        "create, update, delete and the owner token's rotation need IAM: {writes:?}"
    );
}

/// The tables the template declares are the ones the store itself creates (`--create-table`), read
/// back from dynalite: same key schemas, same attribute types.
#[tokio::test]
async fn the_template_tables_are_the_ones_the_store_creates() {
    let t = template();
    let created = support::dynamo_store_named("tpl").await;
    let client = support::dynamo_client();
    let tag_table = registry_db::store::dynamodb::default_tag_table(&created.table);
    for (resource, name) in [
        ("RegistryTable", &created.table),
        ("TagIndexTable", &tag_table),
    ] {
        let declared = &t["Resources"][resource]["Properties"];
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .unwrap();
        let described = described.table().unwrap();
        let keys: Vec<(String, String)> = described
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect();
        let declared_keys: Vec<(String, String)> = declared["KeySchema"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap().to_string(),
                    k["KeyType"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(declared_keys, keys, "{resource}");
        let mut types: Vec<(String, String)> = described
            .attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name().to_string(),
                    a.attribute_type().as_str().to_string(),
                )
            })
            .collect();
        let mut declared_types: Vec<(String, String)> = declared["AttributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["AttributeName"].as_str().unwrap().to_string(),
                    a["AttributeType"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        types.sort();
        declared_types.sort();
        assert_eq!(declared_types, types, "{resource}");
        assert_eq!(
            declared["BillingMode"].as_str(),
            Some("PAY_PER_REQUEST"),
            "{resource}"
        );
        assert_eq!(
            declared["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            Value::Bool(true),
            "{resource}"
        );
        assert_eq!(
            t["Resources"][resource]["DeletionPolicy"].as_str(),
            Some("Retain")
        );
    }
    // The function is told where the index lives.
    let env = &t["Resources"]["RegistryDbFunction"]["Properties"]["Environment"]["Variables"];
    let is_ref_to_index = match &env["TAG_TABLE_NAME"] {
        Value::Tagged(t) => t.tag == "Ref" && t.value.as_str() == Some("TagIndexTable"),
        _ => false,
    };
    assert!(
        is_ref_to_index,
        "TAG_TABLE_NAME: {:?}",
        env["TAG_TABLE_NAME"]
    );
}

#[test]
fn the_function_is_a_scheduled_arm64_cargo_lambda_build() {
    let t = template();
    let f = &t["Resources"]["RegistryDbFunction"];
    assert_eq!(
        f["Metadata"]["BuildMethod"].as_str(),
        Some("rust-cargolambda")
    );
    assert_eq!(f["Properties"]["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(f["Properties"]["Architectures"][0].as_str(), Some("arm64"));
    let events = f["Properties"]["Events"].as_mapping().unwrap();
    assert!(
        events
            .values()
            .any(|e| e["Type"].as_str() == Some("ScheduleV2")),
        "a scheduled health sweep"
    );
}
