//! Decoding every payload shape from the fixtures in `events/` (taken from the AWS event
//! formats), and refusing what is not one.

mod support;

use s3_replicator::decode::{Invocation, MessageContent, ObjectEventKind, decode_invocation};
use serde_json::json;
use support::{fixture, sqs_batch};

fn direct(name: &str) -> Vec<s3_replicator::decode::ObjectEvent> {
    match decode_invocation(&fixture(name)).unwrap() {
        Invocation::Direct(records) => records.into_iter().map(Result::unwrap).collect(),
        other => panic!("{name}: {other:?}"),
    }
}

fn queue(payload: &serde_json::Value) -> Vec<s3_replicator::decode::QueueMessage> {
    match decode_invocation(payload).unwrap() {
        Invocation::Queue(messages) => messages,
        other => panic!("{other:?}"),
    }
}

#[test]
fn decodes_direct_s3_put_with_encoded_key_version_and_sequencer() {
    let events = direct("s3-put.json");
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.kind, ObjectEventKind::Created);
    assert_eq!(event.event_name, "ObjectCreated:Put");
    assert_eq!(event.bucket, "amzn-s3-demo-source-bucket");
    assert_eq!(event.key, "photos/red flower+2.jpg");
    assert!(event.alternate_keys.is_empty());
    assert_eq!(event.size, Some(1305107));
    assert_eq!(
        event.version_id.as_deref(),
        Some("096fKKXTRTtl3on89fVO.nfljtsv6qko")
    );
    assert_eq!(event.sequencer.as_deref(), Some("0C0F6F405D6ED209E1"));
}

#[test]
fn decodes_removals_and_multipart_completions() {
    assert_eq!(direct("s3-delete.json")[0].kind, ObjectEventKind::Removed);
    let completed = &direct("s3-complete-multipart.json")[0];
    assert_eq!(completed.kind, ObjectEventKind::Created);
    assert_eq!(
        completed.event_name,
        "ObjectCreated:CompleteMultipartUpload"
    );
    assert_eq!(completed.key, "exports/2026/11/part-0001.parquet");
}

#[test]
fn decodes_sns_delivered_directly() {
    let events = direct("sns-s3.json");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key, "photos/red flower+2.jpg");
}

#[test]
fn decodes_sqs_batches_of_s3_sns_and_test_events() {
    let messages = queue(&fixture("sqs-s3.json"));
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].message_id,
        "059f36b4-87a3-44ab-83d2-661975830a7d"
    );
    match &messages[1].content {
        Ok(MessageContent::Objects(objects)) => {
            assert_eq!(
                objects[0].as_ref().unwrap().key,
                "docs/annual report (2026).pdf"
            )
        }
        other => panic!("{other:?}"),
    }

    let messages = queue(&fixture("sqs-sns-s3.json"));
    match &messages[0].content {
        Ok(MessageContent::Objects(objects)) => {
            assert_eq!(objects[0].as_ref().unwrap().key, "photos/red flower+2.jpg")
        }
        other => panic!("{other:?}"),
    }

    let messages = queue(&fixture("sqs-test-event.json"));
    assert_eq!(messages[0].content, Ok(MessageContent::TestEvent));
}

#[test]
fn decodes_eventbridge_created_and_deleted() {
    let created = &direct("eventbridge-object-created.json")[0];
    assert_eq!(created.kind, ObjectEventKind::Created);
    assert_eq!(created.bucket, "amzn-s3-demo-source-bucket");
    assert_eq!(created.key, "reports/summary.csv");
    assert!(created.alternate_keys.is_empty());
    assert_eq!(created.size, Some(5));
    assert_eq!(created.sequencer.as_deref(), Some("00617F08299329D189"));
    assert_eq!(
        direct("eventbridge-object-deleted.json")[0].kind,
        ObjectEventKind::Removed
    );
}

#[test]
fn reads_eventbridge_keys_raw_first_and_form_decoded_second() {
    let mut event = fixture("eventbridge-object-created.json");
    event["detail"]["object"]["key"] = json!("c++ notes/a+b%20c:d.txt");
    let Invocation::Direct(records) = decode_invocation(&event).unwrap() else {
        panic!("not direct");
    };
    let decoded = records[0].as_ref().unwrap();
    assert_eq!(decoded.key, "c++ notes/a+b%20c:d.txt");
    assert_eq!(decoded.alternate_keys, vec!["c   notes/a b c:d.txt"]);

    // A raw key that is not valid form encoding has no second reading.
    event["detail"]["object"]["key"] = json!("100%");
    let Invocation::Direct(records) = decode_invocation(&event).unwrap() else {
        panic!("not direct");
    };
    let decoded = records[0].as_ref().unwrap();
    assert_eq!(decoded.key, "100%");
    assert!(decoded.alternate_keys.is_empty());
}

#[test]
fn restores_completed_are_copied_and_lifecycle_expirations_are_removals() {
    let kind = |name: &str| {
        let mut event = fixture("s3-put.json");
        event["Records"][0]["eventName"] = json!(name);
        direct_value(&event)[0].kind
    };
    assert_eq!(kind("ObjectRestore:Completed"), ObjectEventKind::Restored);
    assert_eq!(kind("LifecycleExpiration:Delete"), ObjectEventKind::Removed);
    assert_eq!(
        kind("LifecycleExpiration:DeleteMarkerCreated"),
        ObjectEventKind::Removed
    );
    assert_eq!(kind("ObjectTagging:Put"), ObjectEventKind::Tagged);
    assert_eq!(kind("ObjectTagging:Delete"), ObjectEventKind::Tagged);
    for other in [
        "ObjectRestore:Post",
        "ObjectRestore:Delete",
        "LifecycleTransition",
        "ObjectAcl:Put",
        "IntelligentTiering",
    ] {
        assert_eq!(kind(other), ObjectEventKind::Other, "{other}");
    }
    let mut event = fixture("eventbridge-object-created.json");
    event["detail-type"] = json!("Object Restore Completed");
    assert_eq!(direct_value(&event)[0].kind, ObjectEventKind::Restored);
    event["detail-type"] = json!("Object Restore Initiated");
    assert_eq!(direct_value(&event)[0].kind, ObjectEventKind::Other);
}

fn direct_value(payload: &serde_json::Value) -> Vec<s3_replicator::decode::ObjectEvent> {
    match decode_invocation(payload).unwrap() {
        Invocation::Direct(records) => records.into_iter().map(Result::unwrap).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn refuses_unrecognised_payloads_naming_what_arrived() {
    let cases = [
        (json!([1, 2]), "received an array"),
        (json!("text"), "received a string"),
        (json!(null), "received null"),
        (json!({"hello": 1, "detail": {}}), "[detail, hello]"),
        (json!({"Records": []}), "Records is empty"),
        (json!({"Records": {}}), "Records is not an array"),
        (
            json!({"Records": [{"eventSource": "aws:dynamodb"}]}),
            "\"aws:dynamodb\"",
        ),
        (
            json!({"source": "aws.ec2", "detail-type": "x"}),
            "top-level fields",
        ),
    ];
    for (payload, expected) in cases {
        let error = decode_invocation(&payload).unwrap_err().to_string();
        assert!(
            error.starts_with("unrecognised payload"),
            "{payload}: {error}"
        );
        assert!(error.contains(expected), "{payload}: {error}");
    }
}

#[test]
fn a_bad_record_or_message_fails_alone() {
    let mut event = fixture("s3-put.json");
    let mut bad = event["Records"][0].clone();
    bad["s3"]["object"]["key"] = json!("broken%zz");
    event["Records"].as_array_mut().unwrap().push(bad);
    let Invocation::Direct(records) = decode_invocation(&event).unwrap() else {
        panic!("not direct");
    };
    assert!(records[0].is_ok());
    let error = records[1].as_ref().unwrap_err().to_string();
    assert!(error.contains("invalid percent-escape"), "{error}");

    let mut batch = sqs_batch(&[fixture("s3-put.json"), json!({}), fixture("s3-put.json")]);
    batch["Records"][1]["body"] = json!("{not json");
    let messages = queue(&batch);
    assert!(messages[0].content.is_ok());
    assert!(
        messages[1]
            .content
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("not JSON")
    );
    assert!(messages[2].content.is_ok());

    let batch = sqs_batch(&[json!({"unexpected": true})]);
    let messages = queue(&batch);
    assert!(messages[0].content.is_err());
}

/// What the function does with each payload in `events/`, by file: every file is listed, so a
/// fixture added without its expected outcome fails here.
const FIXTURE_OUTCOMES: &[(&str, &[&str])] = &[
    ("backfill.json", &["backfill"]),
    ("batch-operations-v1.json", &["batch job"]),
    ("batch-operations-v1-regional-arn.json", &["batch job"]),
    ("batch-operations-v2.json", &["batch job"]),
    (
        "eventbridge-object-created.json",
        &["copy reports/summary.csv"],
    ),
    (
        "eventbridge-object-deleted.json",
        &["delete reports/summary.csv"],
    ),
    (
        "eventbridge-object-restore-completed.json",
        &["copy after restore archive/2019/backup.tar"],
    ),
    (
        "eventbridge-object-tags-added.json",
        &["copy tags reports/summary.csv"],
    ),
    (
        "eventbridge-object-tags-deleted.json",
        &["copy tags reports/summary.csv"],
    ),
    (
        "s3-complete-multipart.json",
        &["copy exports/2026/11/part-0001.parquet"],
    ),
    ("s3-copy.json", &["copy copies/report:2026.csv"]),
    (
        "s3-delete-marker-created.json",
        &["delete photos/old photo.jpg"],
    ),
    ("s3-delete.json", &["delete photos/red flower+2.jpg"]),
    (
        "s3-lifecycle-expiration-delete.json",
        &["delete logs/2025/app.log"],
    ),
    (
        "s3-lifecycle-expiration-delete-marker-created.json",
        &["delete logs/2025/app.log"],
    ),
    ("s3-post.json", &["copy uploads/form upload.txt"]),
    ("s3-put.json", &["copy photos/red flower+2.jpg"]),
    (
        "s3-restore-completed.json",
        &["copy after restore archive/2019/backup.tar"],
    ),
    ("s3-restore-post.json", &["ignore ObjectRestore:Post"]),
    (
        "s3-tagging-delete.json",
        &["copy tags photos/red flower+2.jpg"],
    ),
    (
        "s3-tagging-put.json",
        &["copy tags photos/red flower+2.jpg"],
    ),
    ("s3-test-event.json", &["test event"]),
    ("sns-s3.json", &["copy photos/red flower+2.jpg"]),
    ("sns-test-event.json", &["test event"]),
    ("sqs-eventbridge.json", &["copy reports/summary.csv"]),
    (
        "sqs-s3.json",
        &[
            "copy photos/red flower+2.jpg",
            "copy docs/annual report (2026).pdf",
        ],
    ),
    ("sqs-sns-raw-s3.json", &["copy photos/red flower+2.jpg"]),
    ("sqs-sns-s3.json", &["copy photos/red flower+2.jpg"]),
    ("sqs-test-event.json", &["test event"]),
];

fn describe(event: &s3_replicator::decode::ObjectEvent) -> String {
    match event.kind {
        ObjectEventKind::Created => format!("copy {}", event.key),
        ObjectEventKind::Restored => format!("copy after restore {}", event.key),
        ObjectEventKind::Removed => format!("delete {}", event.key),
        ObjectEventKind::Tagged => format!("copy tags {}", event.key),
        ObjectEventKind::Other => format!("ignore {}", event.event_name),
    }
}

fn outcomes(payload: &serde_json::Value) -> Vec<String> {
    if payload.get("backfill").is_some() {
        return vec!["backfill".into()];
    }
    if s3_replicator::entry::batch::is_batch_job(payload) {
        return vec!["batch job".into()];
    }
    let objects = |records: &[Result<s3_replicator::decode::ObjectEvent, _>]| {
        records
            .iter()
            .map(|r| r.as_ref().map_or_else(|e| format!("fail {e}"), describe))
            .collect::<Vec<_>>()
    };
    match decode_invocation(payload).unwrap() {
        Invocation::TestEvent => vec!["test event".into()],
        Invocation::Direct(records) => objects(&records),
        Invocation::Queue(messages) => messages
            .iter()
            .flat_map(|message| match &message.content {
                Ok(MessageContent::TestEvent) => vec!["test event".to_string()],
                Ok(MessageContent::Objects(records)) => objects(records),
                Err(e) => vec![format!("fail {e}")],
            })
            .collect(),
    }
}

#[test]
fn every_fixture_has_its_expected_outcome() {
    let mut files: Vec<String> = std::fs::read_dir(support::repo_root().join("events"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<&str> = FIXTURE_OUTCOMES.iter().map(|(file, _)| *file).collect();
    listed.sort_unstable();
    assert_eq!(
        files, listed,
        "every file in events/ has an expected outcome"
    );
    for (file, expected) in FIXTURE_OUTCOMES {
        assert_eq!(outcomes(&fixture(file)), *expected, "{file}");
    }
}

#[test]
fn names_an_sns_message_from_another_publisher_as_unrecognised() {
    let mut direct = fixture("sns-s3.json");
    direct["Records"][0]["Sns"]["Message"] = json!(r#"{"order": 42, "status": "shipped"}"#);
    let error = decode_invocation(&direct).unwrap_err().to_string();
    assert!(error.starts_with("unrecognised payload"), "{error}");
    assert!(error.contains("[order, status]"), "{error}");
    direct["Records"][0]["Sns"]["Message"] = json!("plain text");
    let error = decode_invocation(&direct).unwrap_err().to_string();
    assert!(error.contains("not JSON"), "{error}");

    let sns = json!({"Type": "Notification", "Message": r#"{"order": 42}"#});
    let messages = queue(&sqs_batch(&[sns]));
    let error = messages[0].content.clone().unwrap_err().to_string();
    assert!(error.starts_with("unrecognised payload"), "{error}");
}

#[test]
fn acknowledges_the_test_event_in_every_wrapping() {
    let test_event = fixture("s3-test-event.json");
    assert_eq!(
        decode_invocation(&test_event).unwrap(),
        Invocation::TestEvent
    );
    let sns = json!({"Type": "Notification", "Message": test_event.to_string()});
    let messages = queue(&sqs_batch(&[test_event.clone(), sns]));
    assert_eq!(messages[0].content, Ok(MessageContent::TestEvent));
    assert_eq!(messages[1].content, Ok(MessageContent::TestEvent));
    assert_eq!(
        decode_invocation(&fixture("sns-test-event.json")).unwrap(),
        Invocation::TestEvent
    );
}
