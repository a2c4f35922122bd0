//! `template.yaml` routes exactly the routes the router serves (read from the OpenAPI document,
//! which is generated from the same route definitions as the router), with IAM auth on writes and
//! none on reads, and its table has the key schema the DynamoDB store uses.

use std::collections::BTreeMap;

use serde_yaml::Value;

fn template() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
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
        3,
        "create, update and delete need IAM: {writes:?}"
    );
}

#[test]
fn the_table_key_schema_is_the_stores() {
    let t = template();
    let table = &t["Resources"]["RegistryTable"]["Properties"];
    let key = &table["KeySchema"][0];
    assert_eq!(
        key["AttributeName"].as_str(),
        Some(registry_db::store::dynamodb::KEY)
    );
    assert_eq!(key["KeyType"].as_str(), Some("HASH"));
    assert_eq!(table["KeySchema"].as_sequence().unwrap().len(), 1);
    assert_eq!(
        table["AttributeDefinitions"][0]["AttributeType"].as_str(),
        Some("S")
    );
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        Value::Bool(true)
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
