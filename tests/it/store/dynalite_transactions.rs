//! TransactWriteItems on the test dynalite, across two tables.
//!
//! dynalite 4.0.0 has no transactions (it answers UnknownOperationException; architect/dynalite#151),
//! so `patches/dynalite+4.0.0.patch`, applied by `npm ci` through patch-package, adds them. These
//! tests hold that patch to what AWS documents, so that the store's real write path (an entry and
//! its tag index rows kept consistent in one transaction) can be tested on dynalite: all or
//! nothing, per-action cancellation reasons in order, the 100-action limit, one action per item,
//! validation as for the single-item calls, isolation between concurrent transactions, and
//! `ClientRequestToken` idempotency (a retried request whose answer was lost succeeds without
//! writing again; the token with another request is a mismatch).

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, ConditionCheck, Delete,
    KeySchemaElement, KeyType, Put, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    Select, TableStatus, TransactWriteItem, Update,
};

type Item = HashMap<String, AttributeValue>;
type TxError = SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>;

static TABLES: AtomicUsize = AtomicUsize::new(0);

/// A fresh table keyed by the string `pk`.
async fn table(client: &Client) -> String {
    let name = format!(
        "tx{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::Relaxed)
    );
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create a table on dynalite");
    // Even with createTableMs 0, dynalite answers ResourceNotFound until the table is ACTIVE.
    for _ in 0..100 {
        let described = client.describe_table().table_name(&name).send().await;
        let status = described.unwrap().table.and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return name;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("table {name} did not become ACTIVE");
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn item(pairs: &[(&str, AttributeValue)]) -> Item {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn key(pk: &str) -> Item {
    item(&[("pk", s(pk))])
}

fn values(pairs: &[(&str, AttributeValue)]) -> Option<Item> {
    Some(item(pairs))
}

fn put(table: &str, it: Item, condition: Option<&str>) -> TransactWriteItem {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(it))
        .set_condition_expression(condition.map(str::to_string))
        .build()
        .unwrap();
    TransactWriteItem::builder().put(put).build()
}

fn delete(table: &str, pk: &str, condition: &str, vals: Option<Item>) -> TransactWriteItem {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key(pk)))
        .condition_expression(condition)
        .set_expression_attribute_values(vals)
        .build()
        .unwrap();
    TransactWriteItem::builder().delete(delete).build()
}

fn update(
    table: &str,
    pk: &str,
    expression: &str,
    condition: Option<&str>,
    vals: Option<Item>,
) -> TransactWriteItem {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key(pk)))
        .update_expression(expression)
        .set_condition_expression(condition.map(str::to_string))
        .set_expression_attribute_values(vals)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .unwrap();
    TransactWriteItem::builder().update(update).build()
}

fn check(table: &str, pk: &str, condition: &str) -> TransactWriteItem {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key(pk)))
        .condition_expression(condition)
        .build()
        .unwrap();
    TransactWriteItem::builder().condition_check(check).build()
}

async fn transact(client: &Client, actions: Vec<TransactWriteItem>) -> Result<(), TxError> {
    client
        .transact_write_items()
        .set_transact_items(Some(actions))
        .send()
        .await
        .map(|_| ())
}

/// The message and reasons of a TransactionCanceledException; panics on any other outcome.
fn cancellation(result: Result<(), TxError>) -> (String, Vec<CancellationReason>) {
    match result
        .expect_err("the transaction must be cancelled")
        .into_service_error()
    {
        TransactWriteItemsError::TransactionCanceledException(e) => (
            e.message().unwrap_or_default().to_string(),
            e.cancellation_reasons().to_vec(),
        ),
        other => panic!("expected TransactionCanceledException, got {other:?}"),
    }
}

/// The message of a ValidationException; panics on any other outcome.
fn validation_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    result: Result<R, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
) -> String {
    let err = result.expect_err("the request must be refused");
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    err.message().unwrap_or_default().to_string()
}

fn codes(reasons: &[CancellationReason]) -> Vec<&str> {
    reasons.iter().map(|r| r.code().unwrap_or("")).collect()
}

async fn get(client: &Client, table: &str, pk: &str) -> Option<Item> {
    client
        .get_item()
        .table_name(table)
        .set_key(Some(key(pk)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

async fn count(client: &Client, table: &str) -> i32 {
    client
        .scan()
        .table_name(table)
        .select(Select::Count)
        .send()
        .await
        .unwrap()
        .count
}

fn number(it: &Item, attr: &str) -> i64 {
    it[attr].as_n().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_transaction_writes_to_both_tables() {
    let client = support::dynamo_client();
    let (entries, tags) = (table(&client).await, table(&client).await);
    transact(
        &client,
        vec![
            put(
                &entries,
                item(&[("pk", s("e1")), ("version", n(1))]),
                Some("attribute_not_exists(pk)"),
            ),
            put(
                &tags,
                item(&[("pk", s("gpu#e1"))]),
                Some("attribute_not_exists(pk)"),
            ),
        ],
    )
    .await
    .expect("both puts commit");
    assert_eq!(
        get(&client, &entries, "e1").await,
        Some(item(&[("pk", s("e1")), ("version", n(1))]))
    );
    assert_eq!(
        get(&client, &tags, "gpu#e1").await,
        Some(item(&[("pk", s("gpu#e1"))]))
    );
}

#[tokio::test]
async fn one_failing_condition_cancels_every_action() {
    let client = support::dynamo_client();
    let (entries, tags) = (table(&client).await, table(&client).await);
    let e1 = item(&[("pk", s("e1")), ("version", n(1))]);
    let t1 = item(&[("pk", s("gpu#e1"))]);
    transact(
        &client,
        vec![
            put(&entries, e1.clone(), None),
            put(&tags, t1.clone(), None),
        ],
    )
    .await
    .unwrap();

    let result = transact(
        &client,
        vec![
            put(&entries, item(&[("pk", s("e2"))]), None),
            delete(&tags, "gpu#e1", "attribute_exists(pk)", None),
            update(
                &entries,
                "e1",
                "SET version = :next",
                Some("version = :expected"),
                values(&[(":next", n(3)), (":expected", n(2))]),
            ),
        ],
    )
    .await;
    let (message, reasons) = cancellation(result);
    assert_eq!(
        message,
        "Transaction cancelled, please refer cancellation reasons for specific reasons \
         [None, None, ConditionalCheckFailed]"
    );
    assert_eq!(codes(&reasons), ["None", "None", "ConditionalCheckFailed"]);
    assert_eq!(reasons[0].message(), None);
    assert_eq!(reasons[2].message(), Some("The conditional request failed"));
    assert_eq!(
        reasons[2].item(),
        Some(&e1),
        "ALL_OLD returns the item that failed"
    );

    // Neither table changed: the passing put and delete were not applied.
    assert_eq!(get(&client, &entries, "e1").await, Some(e1));
    assert_eq!(get(&client, &entries, "e2").await, None);
    assert_eq!(count(&client, &entries).await, 1);
    assert_eq!(get(&client, &tags, "gpu#e1").await, Some(t1));
}

#[tokio::test]
async fn a_conditional_delete_applies_only_when_its_condition_holds() {
    let client = support::dynamo_client();
    let (entries, tags) = (table(&client).await, table(&client).await);
    transact(
        &client,
        vec![
            put(&entries, item(&[("pk", s("e1")), ("version", n(4))]), None),
            put(&tags, item(&[("pk", s("gpu#e1"))]), None),
        ],
    )
    .await
    .unwrap();
    let delete_both = |version: i64| {
        vec![
            delete(
                &entries,
                "e1",
                "version = :v",
                values(&[(":v", n(version))]),
            ),
            delete(&tags, "gpu#e1", "attribute_exists(pk)", None),
        ]
    };

    let (_, reasons) = cancellation(transact(&client, delete_both(3)).await);
    assert_eq!(codes(&reasons), ["ConditionalCheckFailed", "None"]);
    assert!(
        reasons[0].item().is_none(),
        "no Item without ReturnValuesOnConditionCheckFailure"
    );
    assert!(get(&client, &entries, "e1").await.is_some());
    assert!(get(&client, &tags, "gpu#e1").await.is_some());

    transact(&client, delete_both(4)).await.unwrap();
    assert_eq!(get(&client, &entries, "e1").await, None);
    assert_eq!(get(&client, &tags, "gpu#e1").await, None);
}

#[tokio::test]
async fn an_update_applies_its_update_expression() {
    let client = support::dynamo_client();
    let (entries, tags) = (table(&client).await, table(&client).await);
    transact(
        &client,
        vec![put(
            &entries,
            item(&[("pk", s("e1")), ("version", n(1)), ("name", s("old"))]),
            None,
        )],
    )
    .await
    .unwrap();

    // `name` is a reserved word, so it goes through ExpressionAttributeNames.
    let rename = Update::builder()
        .table_name(&entries)
        .set_key(Some(key("e1")))
        .update_expression("SET version = version + :one, #name = :name REMOVE gone")
        .condition_expression("version = :one")
        .expression_attribute_names("#name", "name")
        .set_expression_attribute_values(values(&[(":one", n(1)), (":name", s("new"))]))
        .build()
        .unwrap();
    transact(
        &client,
        vec![
            TransactWriteItem::builder().update(rename).build(),
            // An update of a missing item creates it from its key, as UpdateItem does.
            update(
                &tags,
                "gpu#e1",
                "SET refs = if_not_exists(refs, :zero) + :one",
                None,
                values(&[(":zero", n(0)), (":one", n(1))]),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        get(&client, &entries, "e1").await,
        Some(item(&[
            ("pk", s("e1")),
            ("version", n(2)),
            ("name", s("new"))
        ]))
    );
    assert_eq!(
        get(&client, &tags, "gpu#e1").await,
        Some(item(&[("pk", s("gpu#e1")), ("refs", n(1))]))
    );

    // An update that cannot be applied to the item as it stands cancels the transaction with a
    // ValidationError reason, as AWS does, and writes nothing.
    let (message, reasons) = cancellation(
        transact(
            &client,
            vec![
                update(
                    &tags,
                    "gpu#e1",
                    "SET refs = refs + :one",
                    None,
                    values(&[(":one", n(1))]),
                ),
                update(
                    &entries,
                    "e1",
                    "SET version = absent + :one",
                    None,
                    values(&[(":one", n(1))]),
                ),
            ],
        )
        .await,
    );
    assert!(message.ends_with("[None, ValidationError]"), "{message}");
    assert_eq!(
        reasons[1].message(),
        Some("The provided expression refers to an attribute that does not exist in the item")
    );
    assert_eq!(
        number(&get(&client, &tags, "gpu#e1").await.unwrap(), "refs"),
        1
    );
}

#[tokio::test]
async fn a_transaction_holds_at_most_100_actions() {
    let client = support::dynamo_client();
    let (entries, tags) = (table(&client).await, table(&client).await);
    let actions = |prefix: &str, len: usize| -> Vec<TransactWriteItem> {
        (0..len)
            .map(|i| {
                let table = if i % 2 == 0 { &entries } else { &tags };
                put(table, key(&format!("{prefix}{i}")), None)
            })
            .collect()
    };

    transact(&client, actions("a", 100)).await.unwrap();
    assert_eq!(
        count(&client, &entries).await + count(&client, &tags).await,
        100
    );

    let message = validation_error(transact(&client, actions("b", 101)).await);
    assert!(
        message.starts_with("1 validation error detected: Value '[")
            && message.ends_with(
                "]' at 'transactItems' failed to satisfy constraint: \
                 Member must have length less than or equal to 100"
            ),
        "{message}"
    );
    let message = validation_error(transact(&client, vec![]).await);
    assert!(
        message.ends_with("Member must have length greater than or equal to 1"),
        "{message}"
    );
    assert_eq!(
        count(&client, &entries).await + count(&client, &tags).await,
        100,
        "a refused transaction writes nothing"
    );
}

#[tokio::test]
async fn two_actions_on_one_item_are_refused() {
    let client = support::dynamo_client();
    let (entries, tags) = (table(&client).await, table(&client).await);
    let message = validation_error(
        transact(
            &client,
            vec![
                check(&entries, "e1", "attribute_not_exists(pk)"),
                put(&tags, key("e1"), None),
                put(&entries, key("e1"), None),
            ],
        )
        .await,
    );
    assert_eq!(
        message,
        "Transaction request cannot include multiple operations on one item"
    );
    assert_eq!(count(&client, &tags).await, 0);

    // The same key in two tables is two items.
    transact(
        &client,
        vec![put(&entries, key("e1"), None), put(&tags, key("e1"), None)],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn actions_are_validated_like_single_item_calls() {
    let client = support::dynamo_client();
    let entries = table(&client).await;

    // Expression placeholders: unused and undefined ones are refused with PutItem's own words.
    for (condition, vals) in [
        ("attribute_not_exists(pk)", item(&[(":unused", n(1))])),
        ("version = :undefined", item(&[(":v", n(1))])),
    ] {
        let single = validation_error(
            client
                .put_item()
                .table_name(&entries)
                .set_item(Some(key("e1")))
                .condition_expression(condition)
                .set_expression_attribute_values(Some(vals.clone()))
                .send()
                .await,
        );
        let in_transaction = Put::builder()
            .table_name(&entries)
            .set_item(Some(key("e1")))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(vals))
            .build()
            .unwrap();
        let message = validation_error(
            transact(
                &client,
                vec![TransactWriteItem::builder().put(in_transaction).build()],
            )
            .await,
        );
        assert_eq!(message, single);
    }

    // Items over 400 KB.
    let big = item(&[("pk", s("big")), ("blob", s(&"x".repeat(400 * 1024)))]);
    let message = validation_error(transact(&client, vec![put(&entries, big, None)]).await);
    assert_eq!(message, "Item size has exceeded the maximum allowed size");

    // Keys that do not match the table.
    let message = validation_error(
        transact(&client, vec![put(&entries, item(&[("id", s("e1"))]), None)]).await,
    );
    assert_eq!(
        message,
        "One or more parameter values were invalid: Missing the key pk in the item"
    );

    // An action that is none of Put, Update, Delete, ConditionCheck.
    let message =
        validation_error(transact(&client, vec![TransactWriteItem::builder().build()]).await);
    assert_eq!(
        message,
        "TransactItems can only contain one of Check, Put, Update or Delete"
    );
    assert_eq!(count(&client, &entries).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_on_shared_items_never_interleave() {
    const TASKS: i64 = 20;
    const MOVES_PER_TASK: i64 = 2;
    const START: i64 = 10_000;
    let client = support::dynamo_client();
    let (left, right) = (table(&client).await, table(&client).await);
    transact(
        &client,
        vec![
            put(
                &left,
                item(&[("pk", s("counter")), ("n", n(START)), ("version", n(0))]),
                None,
            ),
            put(
                &right,
                item(&[("pk", s("counter")), ("n", n(0)), ("version", n(0))]),
                None,
            ),
        ],
    )
    .await
    .unwrap();

    // Each task moves `amount` from left to right, MOVES_PER_TASK times: read both versions,
    // then move in one transaction conditioned on them; a cancelled move is retried from a
    // fresh read. A lost update would show as a version behind the count of successes, a
    // half-applied move as a sum other than START.
    let tasks: Vec<_> = (1..=TASKS)
        .map(|amount| {
            let (client, left, right) = (client.clone(), left.clone(), right.clone());
            tokio::spawn(async move {
                let (mut moved, mut cancelled) = (0, 0);
                while moved < MOVES_PER_TASK {
                    let lv = number(&get(&client, &left, "counter").await.unwrap(), "version");
                    let rv = number(&get(&client, &right, "counter").await.unwrap(), "version");
                    let step = |table: &str, op: &str, version: i64| {
                        update(
                            table,
                            "counter",
                            &format!("SET n = n {op} :amount, version = version + :one"),
                            Some("version = :seen"),
                            values(&[
                                (":amount", n(amount)),
                                (":one", n(1)),
                                (":seen", n(version)),
                            ]),
                        )
                    };
                    // Half the tasks name the items in the other order: locking must not
                    // follow request order, or two such transactions deadlock.
                    let mut actions = vec![step(&left, "-", lv), step(&right, "+", rv)];
                    if amount % 2 == 0 {
                        actions.reverse();
                    }
                    match transact(&client, actions).await {
                        Ok(()) => moved += 1,
                        Err(e) => {
                            let (_, reasons) = cancellation(Err(e));
                            assert!(codes(&reasons).contains(&"ConditionalCheckFailed"));
                            cancelled += 1;
                        }
                    }
                }
                (amount * moved, cancelled)
            })
        })
        .collect();
    let results = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures::future::join_all(tasks),
    )
    .await
    .expect("the moves finish (a deadlock would hang here)");
    let (mut total_moved, mut total_cancelled) = (0, 0);
    for result in results {
        let (moved, cancelled) = result.unwrap();
        total_moved += moved;
        total_cancelled += cancelled;
    }

    let (l, r) = (
        get(&client, &left, "counter").await.unwrap(),
        get(&client, &right, "counter").await.unwrap(),
    );
    println!(
        "{} moves committed, {total_cancelled} cancelled by a concurrent move",
        TASKS * MOVES_PER_TASK
    );
    assert_eq!(
        number(&l, "n") + number(&r, "n"),
        START,
        "the sum is invariant"
    );
    assert_eq!(
        number(&r, "n"),
        total_moved,
        "every committed move is reflected"
    );
    assert_eq!(number(&l, "version"), TASKS * MOVES_PER_TASK);
    assert_eq!(number(&r, "version"), TASKS * MOVES_PER_TASK);
    assert!(
        total_cancelled > 0,
        "the tasks did contend (otherwise this test proves nothing about isolation)"
    );
}

async fn transact_with_token(
    client: &Client,
    token: &str,
    actions: Vec<TransactWriteItem>,
) -> Result<(), TxError> {
    client
        .transact_write_items()
        .client_request_token(token)
        .set_transact_items(Some(actions))
        .send()
        .await
        .map(|_| ())
}

/// AWS: a retried request with the same token (its first answer lost) succeeds without writing
/// again, even though its condition no longer holds.
#[tokio::test]
async fn the_same_token_and_request_succeed_once_without_writing_again() {
    let client = support::dynamo_client();
    let t = table(&client).await;
    let create = || {
        vec![
            put(
                &t,
                item(&[("pk", s("a")), ("n", n(1))]),
                Some("attribute_not_exists(pk)"),
            ),
            update(&t, "counter", "ADD c :one", None, values(&[(":one", n(1))])),
        ]
    };
    transact_with_token(&client, "token-1", create())
        .await
        .unwrap();
    // The retry answers as the first attempt did, and the counter is not added to again.
    transact_with_token(&client, "token-1", create())
        .await
        .expect("a replay of a succeeded request with its token succeeds");
    assert_eq!(number(&get(&client, &t, "counter").await.unwrap(), "c"), 1);
    // Without the token it is a new request: its condition fails.
    let (_, reasons) = cancellation(transact(&client, create()).await);
    assert_eq!(codes(&reasons), ["ConditionalCheckFailed", "None"]);
    // A new token is a new request too.
    let (_, reasons) = cancellation(transact_with_token(&client, "token-2", create()).await);
    assert_eq!(codes(&reasons), ["ConditionalCheckFailed", "None"]);
    assert_eq!(number(&get(&client, &t, "counter").await.unwrap(), "c"), 1);
}

#[tokio::test]
async fn the_same_token_with_another_request_is_a_mismatch() {
    let client = support::dynamo_client();
    let t = table(&client).await;
    let write = |v: i64| vec![put(&t, item(&[("pk", s("a")), ("n", n(v))]), None)];
    transact_with_token(&client, "token-m", write(1))
        .await
        .unwrap();
    let err = transact_with_token(&client, "token-m", write(2))
        .await
        .expect_err("another request under a used token is refused");
    assert_eq!(err.code(), Some("IdempotentParameterMismatchException"));
    assert!(matches!(
        err.into_service_error(),
        TransactWriteItemsError::IdempotentParameterMismatchException(_)
    ));
    // Nothing of the refused request was written.
    assert_eq!(number(&get(&client, &t, "a").await.unwrap(), "n"), 1);
}

/// The fingerprint of a request does not depend on the order in which a map's keys travel.
#[tokio::test]
async fn the_same_request_with_its_map_keys_reordered_is_the_same_request() {
    let client = support::dynamo_client();
    let t = table(&client).await;
    let attrs: Vec<(String, AttributeValue)> = (0..20)
        .map(|i| (format!("a{i}"), n(i)))
        .chain([("pk".to_string(), s("a"))])
        .collect();
    // Two maps filled in opposite orders (a HashMap's order follows its own random seed).
    let forward: Item = attrs.iter().cloned().collect();
    let backward: Item = attrs.iter().rev().cloned().collect();
    transact_with_token(&client, "token-o", vec![put(&t, forward, None)])
        .await
        .unwrap();
    transact_with_token(&client, "token-o", vec![put(&t, backward, None)])
        .await
        .expect("the same request is recognised whatever its key order");
}

/// A request that was cancelled wrote nothing; the same token runs it again, and then it may
/// succeed.
#[tokio::test]
async fn a_cancelled_request_runs_again_under_its_token() {
    let client = support::dynamo_client();
    let t = table(&client).await;
    let needs_b = || {
        vec![
            check(&t, "b", "attribute_exists(pk)"),
            put(&t, item(&[("pk", s("a"))]), None),
        ]
    };
    let (_, reasons) = cancellation(transact_with_token(&client, "token-c", needs_b()).await);
    assert_eq!(codes(&reasons), ["ConditionalCheckFailed", "None"]);
    assert!(get(&client, &t, "a").await.is_none());
    transact(&client, vec![put(&t, item(&[("pk", s("b"))]), None)])
        .await
        .unwrap();
    transact_with_token(&client, "token-c", needs_b())
        .await
        .expect("the condition holds now");
    assert!(get(&client, &t, "a").await.is_some());
}

#[tokio::test]
async fn a_token_longer_than_36_characters_is_refused() {
    let client = support::dynamo_client();
    let t = table(&client).await;
    let message = validation_error(
        transact_with_token(
            &client,
            &"x".repeat(37),
            vec![put(&t, item(&[("pk", s("a"))]), None)],
        )
        .await,
    );
    assert!(message.contains("clientRequestToken"), "{message}");
    assert!(get(&client, &t, "a").await.is_none());
}
