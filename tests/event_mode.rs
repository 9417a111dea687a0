//! Event-mode replication across two accounts, on the local S3 emulator with cross-account
//! authorization enforced.

mod support;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Tag, Tagging};
use s3_replicator::HandlerError;
use s3_replicator::handle_payload;
use serde_json::json;
use support::{
    ACCOUNT_B, World, WorldOptions, eventbridge_event, failed_message_ids, fixture, s3_event,
    sqs_batch,
};

#[tokio::test]
async fn copies_object_with_metadata_content_type_cache_control_and_tags() {
    let world = World::new("meta", WorldOptions::default()).await;
    world
        .admin_a
        .put_object()
        .bucket(&world.source_bucket)
        .key("reports/q3 summary.csv")
        .body(ByteStream::from_static(b"region,total\neu,42\n"))
        .content_type("text/csv")
        .cache_control("max-age=300")
        .content_disposition("attachment")
        .metadata("origin", "ledger")
        .metadata("run-id", "7")
        .tagging("team=finance&classification=internal")
        .send()
        .await
        .unwrap();

    let replicator = world.replicator().await;
    let event = s3_event(
        "s3-put.json",
        &world.source_bucket,
        "reports/q3 summary.csv",
    );
    let summary = handle_payload(&event, &replicator).await.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(summary["bytes"], b"region,total\neu,42\n".len());

    let head = world.destination_head("reports/q3 summary.csv").await;
    assert_eq!(head.content_type(), Some("text/csv"));
    assert_eq!(head.cache_control(), Some("max-age=300"));
    assert_eq!(head.content_disposition(), Some("attachment"));
    let metadata = head.metadata().unwrap();
    assert_eq!(metadata.get("origin").map(String::as_str), Some("ledger"));
    assert_eq!(metadata.get("run-id").map(String::as_str), Some("7"));

    let source_head = world
        .admin_a
        .head_object()
        .bucket(&world.source_bucket)
        .key("reports/q3 summary.csv")
        .send()
        .await
        .unwrap();
    assert_eq!(head.e_tag(), source_head.e_tag());

    let tags = world
        .admin_b
        .get_object_tagging()
        .bucket(&world.destination_bucket)
        .key("reports/q3 summary.csv")
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            ("classification".to_string(), "internal".to_string()),
            ("team".to_string(), "finance".to_string())
        ]
    );
    assert_eq!(
        world.destination_body("reports/q3 summary.csv").await,
        b"region,total\neu,42\n"
    );
    assert_eq!(
        world
            .emulator
            .object_owner(&world.destination_bucket, "reports/q3 summary.csv")
            .as_deref(),
        Some(ACCOUNT_B)
    );
}

#[tokio::test]
async fn fails_with_access_denied_and_writes_nothing_without_the_bucket_policy() {
    let world = World::new(
        "nopolicy",
        WorldOptions {
            without_bucket_policy: true,
            ..Default::default()
        },
    )
    .await;
    world.put_source("a.txt", b"alpha").await;
    let replicator = world.replicator().await;

    let direct = s3_event("s3-put.json", &world.source_bucket, "a.txt");
    let error = handle_payload(&direct, &replicator).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            HandlerError::ObjectsFailed {
                failed: 1,
                total: 1,
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("access denied"), "{message}");
    assert!(message.contains("bucket policy (account B)"), "{message}");
    assert!(message.contains(&world.destination_bucket), "{message}");

    let queued = sqs_batch(&[direct]);
    let response = handle_payload(&queued, &replicator).await.unwrap();
    assert_eq!(failed_message_ids(&response), vec!["message-0"]);
    assert!(world.destination_keys().await.is_empty());

    // The same world with the grant attached replicates.
    world.attach_bucket_policy().await;
    let response = handle_payload(&queued, &replicator).await.unwrap();
    assert!(failed_message_ids(&response).is_empty(), "{response}");
    assert_eq!(world.destination_keys().await, vec!["a.txt"]);

    world.remove_bucket_policy().await;
    world.put_source("b.txt", b"beta").await;
    let error = world.put_event(&replicator, "b.txt").await.unwrap_err();
    assert!(error.to_string().contains("access denied"));
    assert_eq!(world.destination_keys().await, vec!["a.txt"]);
}

#[tokio::test]
async fn copies_keys_that_need_encoding() {
    let world = World::new(
        "keys",
        WorldOptions {
            destination_prefix: "from-a/".into(),
            ..Default::default()
        },
    )
    .await;
    let long_key = format!(
        "long/{}",
        "k".repeat(1024 - "long/".len() - "from-a/".len())
    );
    let keys = vec![
        "with space.txt".to_string(),
        "plus+sign.txt".to_string(),
        "100% done.txt".to_string(),
        "literal%2B.txt".to_string(),
        "unicode/日本語/ファイル-ü.txt".to_string(),
        "query?a&b#c=d.txt".to_string(),
        "double//slash.txt".to_string(),
        "/leading-slash.txt".to_string(),
        "folder/".to_string(),
        long_key.clone(),
    ];
    for key in &keys {
        world.put_source(key, key.as_bytes()).await;
    }
    let replicator = world.replicator().await;
    for key in &keys {
        let event = s3_event("s3-put.json", &world.source_bucket, key);
        let summary = handle_payload(&event, &replicator)
            .await
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(summary["copied"], 1, "{key:?}: {summary}");
    }
    let mut expected: Vec<String> = keys.iter().map(|k| format!("from-a/{k}")).collect();
    expected.sort();
    let mut listed = world.destination_keys().await;
    listed.sort();
    assert_eq!(listed, expected);
    for key in &keys {
        assert_eq!(
            world.destination_body(&format!("from-a/{key}")).await,
            key.as_bytes(),
            "{key:?}"
        );
    }
    assert_eq!(format!("from-a/{long_key}").len(), 1024);
}

#[tokio::test]
async fn fails_a_key_whose_destination_would_exceed_1024_bytes() {
    let world = World::new(
        "toolong",
        WorldOptions {
            destination_prefix: "from-a/".into(),
            ..Default::default()
        },
    )
    .await;
    let key = "x".repeat(1020);
    world.put_source(&key, b"x").await;
    let replicator = world.replicator().await;
    let error = world.put_event(&replicator, &key).await.unwrap_err();
    assert!(error.to_string().contains("1027 bytes"), "{error}");
    assert!(world.destination_keys().await.is_empty());
}

#[tokio::test]
async fn fails_exactly_the_sqs_message_whose_object_fails() {
    let world = World::new("batch", WorldOptions::default()).await;
    for key in ["ok-1.txt", "secret/denied.txt", "ok-2.txt"] {
        world.put_source(key, key.as_bytes()).await;
    }
    // Account A denies the function's role reads under secret/, so that object fails for real.
    let deny = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Principal": {"AWS": world.role_arn},
            "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{}/secret/*", world.source_bucket),
        }]
    });
    world
        .admin_a
        .put_bucket_policy()
        .bucket(&world.source_bucket)
        .policy(deny.to_string())
        .send()
        .await
        .unwrap();

    let bodies: Vec<_> = ["ok-1.txt", "secret/denied.txt", "ok-2.txt"]
        .iter()
        .map(|key| s3_event("s3-put.json", &world.source_bucket, key))
        .collect();
    let replicator = world.replicator().await;
    let response = handle_payload(&sqs_batch(&bodies), &replicator)
        .await
        .unwrap();
    assert_eq!(failed_message_ids(&response), vec!["message-1"]);
    let mut keys = world.destination_keys().await;
    keys.sort();
    assert_eq!(keys, vec!["ok-1.txt", "ok-2.txt"]);
}

#[tokio::test]
async fn refuses_events_for_other_buckets_and_acknowledges_test_events() {
    let world = World::new("foreign", WorldOptions::default()).await;
    // Another bucket in account A that the role could read: the event must still be refused.
    let other = support::unique("foreign-other");
    world
        .admin_a
        .create_bucket()
        .bucket(&other)
        .send()
        .await
        .unwrap();
    world
        .admin_a
        .put_object()
        .bucket(&other)
        .key("payroll.csv")
        .body(ByteStream::from_static(b"secret"))
        .send()
        .await
        .unwrap();
    let readable = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": world.role_arn},
            "Action": ["s3:GetObject", "s3:GetObjectTagging", "s3:ListBucket"],
            "Resource": [format!("arn:aws:s3:::{other}"), format!("arn:aws:s3:::{other}/*")],
        }]
    });
    world
        .admin_a
        .put_bucket_policy()
        .bucket(&other)
        .policy(readable.to_string())
        .send()
        .await
        .unwrap();
    let replicator = world.replicator().await;

    let error = handle_payload(&s3_event("s3-put.json", &other, "payroll.csv"), &replicator)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");
    let foreign_in_queue = sqs_batch(&[s3_event("s3-put.json", &other, "payroll.csv")]);
    let response = handle_payload(&foreign_in_queue, &replicator)
        .await
        .unwrap();
    assert_eq!(failed_message_ids(&response), vec!["message-0"]);

    let response = handle_payload(&fixture("sqs-test-event.json"), &replicator)
        .await
        .unwrap();
    assert!(failed_message_ids(&response).is_empty());
    assert!(world.destination_keys().await.is_empty());
}

#[tokio::test]
async fn skips_a_source_deleted_before_processing() {
    let world = World::new("gone", WorldOptions::default()).await;
    world.put_source("short-lived.txt", b"x").await;
    world
        .admin_a
        .delete_object()
        .bucket(&world.source_bucket)
        .key("short-lived.txt")
        .send()
        .await
        .unwrap();
    let replicator = world.replicator().await;
    let summary = world
        .put_event(&replicator, "short-lived.txt")
        .await
        .unwrap();
    assert_eq!(
        (summary["skipped"].clone(), summary["failed"].clone()),
        (json!(1), json!(0))
    );
    assert!(world.destination_keys().await.is_empty());
}

#[tokio::test]
async fn replicates_removals_only_when_enabled_and_the_source_is_gone() {
    for replicate_deletes in [false, true] {
        let world = World::new(
            "deletes",
            WorldOptions {
                replicate_deletes,
                ..Default::default()
            },
        )
        .await;
        let replicator = world.replicator().await;
        for key in ["removed.txt", "recreated.txt"] {
            world.put_source(key, b"v1").await;
            world.put_event(&replicator, key).await.unwrap();
        }
        world
            .admin_a
            .delete_object()
            .bucket(&world.source_bucket)
            .key("removed.txt")
            .send()
            .await
            .unwrap();
        // recreated.txt: its removal event arrives after it was written again.
        let summary = handle_payload(
            &s3_event("s3-delete.json", &world.source_bucket, "removed.txt"),
            &replicator,
        )
        .await
        .unwrap();
        let stale = handle_payload(
            &s3_event("s3-delete.json", &world.source_bucket, "recreated.txt"),
            &replicator,
        )
        .await
        .unwrap();
        // A removal event for a key A still has converges B on A's current object: it is
        // copied again, never deleted, whether deletes are replicated or not.
        assert_eq!(stale["copied"], 1, "{stale}");
        let mut keys = world.destination_keys().await;
        keys.sort();
        if replicate_deletes {
            assert_eq!(summary["deleted"], 1, "{summary}");
            assert_eq!(keys, vec!["recreated.txt"]);
        } else {
            assert_eq!(summary["skipped"], 1, "{summary}");
            assert_eq!(keys, vec!["recreated.txt", "removed.txt"]);
        }
    }
}

#[tokio::test]
async fn replicates_sns_wrapped_and_eventbridge_events() {
    let world = World::new("shapes", WorldOptions::default()).await;
    let replicator = world.replicator().await;

    world.put_source("via sns.txt", b"sns").await;
    let mut sns = fixture("sqs-sns-s3.json");
    let inner = s3_event("s3-put.json", &world.source_bucket, "via sns.txt");
    let mut notification: serde_json::Value =
        serde_json::from_str(sns["Records"][0]["body"].as_str().unwrap()).unwrap();
    notification["Message"] = json!(inner.to_string());
    sns["Records"][0]["body"] = json!(notification.to_string());
    let response = handle_payload(&sns, &replicator).await.unwrap();
    assert!(failed_message_ids(&response).is_empty(), "{response}");

    // EventBridge keys are taken as they come when their decoded reading names nothing.
    world.put_source("eventbridge/a+b c.txt", b"eb").await;
    let event = eventbridge_event(
        "eventbridge-object-created.json",
        &world.source_bucket,
        "eventbridge/a+b c.txt",
    );
    let summary = handle_payload(&event, &replicator).await.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");

    let mut keys = world.destination_keys().await;
    keys.sort();
    assert_eq!(keys, vec!["eventbridge/a+b c.txt", "via sns.txt"]);
}

#[tokio::test]
async fn replicates_what_the_source_bucket_notifies_through_sqs() {
    let world = World::new("flow", WorldOptions::default()).await;
    let queue = world.emulator.harness(
        "queue-notifications",
        json!({"bucket": world.source_bucket, "queue": support::unique("notifications")}),
    );
    let queue_url = queue["queue_url"].as_str().unwrap();
    let keys = ["flow/one.txt", "flow/two words.txt", "flow/three+plus.txt"];
    for key in keys {
        world.put_source(key, key.as_bytes()).await;
    }
    // S3 sends s3:TestEvent when the notification is configured, then one message per upload.
    let batch = world.emulator.harness(
        "receive",
        json!({"queue_url": queue_url, "min_messages": keys.len() + 1, "max_messages": 10}),
    );
    let bodies: Vec<&str> = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), keys.len() + 1, "{batch}");
    assert_eq!(
        bodies.iter().filter(|b| b.contains("s3:TestEvent")).count(),
        1
    );

    let replicator = world.replicator().await;
    let response = handle_payload(&batch, &replicator).await.unwrap();
    assert!(failed_message_ids(&response).is_empty(), "{response}");
    let mut listed = world.destination_keys().await;
    listed.sort();
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort();
    assert_eq!(listed, expected);
    for key in keys {
        assert_eq!(world.destination_body(key).await, key.as_bytes());
    }
}

#[tokio::test]
async fn replica_owned_by_b_even_without_an_acl_under_bucket_owner_enforced() {
    let world = World::new(
        "noacl",
        WorldOptions {
            destination_acl: Some("none"),
            ..Default::default()
        },
    )
    .await;
    world.put_source("owned.txt", b"o").await;
    let replicator = world.replicator().await;
    world.put_event(&replicator, "owned.txt").await.unwrap();
    assert_eq!(
        world
            .emulator
            .object_owner(&world.destination_bucket, "owned.txt")
            .as_deref(),
        Some(ACCOUNT_B)
    );
    assert_eq!(world.destination_body("owned.txt").await, b"o");
}

#[tokio::test]
async fn copies_tags_set_after_the_upload() {
    let world = World::new("retag", WorldOptions::default()).await;
    world.put_source("t.txt", b"t").await;
    world
        .admin_a
        .put_object_tagging()
        .bucket(&world.source_bucket)
        .key("t.txt")
        .tagging(
            Tagging::builder()
                .tag_set(Tag::builder().key("stage").value("final").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let replicator = world.replicator().await;
    world.put_event(&replicator, "t.txt").await.unwrap();
    let tags = world
        .admin_b
        .get_object_tagging()
        .bucket(&world.destination_bucket)
        .key("t.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1);
    assert_eq!(tags.tag_set()[0].value(), "final");
}

#[tokio::test]
async fn duplicated_and_out_of_order_events_converge_on_the_current_object() {
    let world = World::new("order", WorldOptions::default()).await;
    let replicator = world.replicator().await;
    let event = |sequencer: &str| {
        let mut event = s3_event("s3-put.json", &world.source_bucket, "ledger.csv");
        event["Records"][0]["s3"]["object"]["sequencer"] = json!(sequencer);
        event
    };
    world.put_source("ledger.csv", b"version 1").await;
    let first = event("0055AED6DCD90281E5");
    world.put_source("ledger.csv", b"version 2, newer").await;
    let second = event("0055AED6DCD90281E6");
    // The newer event, then the older one, then each again: every delivery succeeds and the
    // replica is the source's current object each time, never the older version.
    for delivery in [&second, &first, &second, &first] {
        let summary = handle_payload(delivery, &replicator).await.unwrap();
        assert_eq!(summary["failed"], 0, "{summary}");
        assert_eq!(
            world.destination_body("ledger.csv").await,
            b"version 2, newer"
        );
    }
}

/// The requests `payload` costs, by operation.
async fn requests_for(
    world: &World,
    replicator: &s3_replicator::Replicator,
    payload: &serde_json::Value,
) -> (serde_json::Value, std::collections::BTreeMap<String, u64>) {
    let (summary, requests) = world
        .operations_during(handle_payload(payload, replicator))
        .await;
    (summary.unwrap(), requests)
}

fn count(requests: &std::collections::BTreeMap<String, u64>, prefix: &str) -> u64 {
    requests
        .iter()
        .filter(|(operation, _)| operation.starts_with(prefix))
        .map(|(_, count)| count)
        .sum()
}

#[tokio::test]
async fn a_small_object_costs_one_copy_request_and_falls_back_only_when_it_must() {
    let world = World::new("onerequest", WorldOptions::default()).await;
    let replicator = world.replicator().await;

    // The event's ETag and size are enough: one CopyObject, conditional on that ETag.
    world.put_source("one/fresh.txt", b"fresh").await;
    let event = world.s3_event_now("s3-put.json", "one/fresh.txt").await;
    let (summary, requests) = requests_for(&world, &replicator, &event).await;
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(
        requests,
        [("CopyObject".to_string(), 1)].into(),
        "{requests:?}"
    );

    // Changed since the event: the condition fails, the head is read, the new object copied.
    world.put_source("one/changed.txt", b"first").await;
    let event = world.s3_event_now("s3-put.json", "one/changed.txt").await;
    world.put_source("one/changed.txt", b"second, longer").await;
    let (summary, requests) = requests_for(&world, &replicator, &event).await;
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(
        world.destination_body("one/changed.txt").await,
        b"second, longer"
    );
    assert_eq!(
        (count(&requests, "CopyObject"), count(&requests, "HEAD")),
        (2, 1)
    );

    // Gone: the copy finds nothing, the head confirms it, one listing confirms the bucket.
    world.put_source("one/gone.txt", b"gone").await;
    let event = world.s3_event_now("s3-put.json", "one/gone.txt").await;
    world
        .admin_a
        .delete_object()
        .bucket(&world.source_bucket)
        .key("one/gone.txt")
        .send()
        .await
        .unwrap();
    let (summary, requests) = requests_for(&world, &replicator, &event).await;
    assert_eq!(
        (summary["skipped"].as_u64(), summary["copied"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        (
            count(&requests, "CopyObject"),
            count(&requests, "HEAD"),
            count(&requests, "GET ?")
        ),
        (1, 1, 1),
        "{requests:?}"
    );
}

#[tokio::test]
async fn an_event_without_an_etag_or_with_another_key_reading_reads_the_head() {
    let world = World::new("headfirst", WorldOptions::default()).await;
    let replicator = world.replicator().await;

    // No ETag in the event: the head first, then the copy.
    world.put_source("one/no-etag.txt", b"no etag").await;
    let mut event = world.s3_event_now("s3-put.json", "one/no-etag.txt").await;
    event["Records"][0]["s3"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("eTag");
    let (summary, requests) = requests_for(&world, &replicator, &event).await;
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(
        (count(&requests, "CopyObject"), count(&requests, "HEAD")),
        (1, 1)
    );

    // EventBridge's raw key names nothing, its decoded reading names the object.
    world.put_source("one/a b.txt", b"ab").await;
    let head = world
        .admin_a
        .head_object()
        .bucket(&world.source_bucket)
        .key("one/a b.txt");
    let head = head.send().await.unwrap();
    let mut event = eventbridge_event(
        "eventbridge-object-created.json",
        &world.source_bucket,
        "one/a+b.txt",
    );
    event["detail"]["object"]["etag"] = json!(head.e_tag().unwrap().trim_matches('"'));
    event["detail"]["object"]["size"] = json!(head.content_length().unwrap());
    let (summary, requests) = requests_for(&world, &replicator, &event).await;
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(world.destination_body("one/a b.txt").await, b"ab");
    assert_eq!(
        (count(&requests, "CopyObject"), count(&requests, "HEAD")),
        (2, 2)
    );
}
