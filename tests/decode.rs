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
    assert_eq!(event.alternate_key, None);
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
    assert_eq!(created.alternate_key, None);
    assert_eq!(created.size, Some(5));
    assert_eq!(created.sequencer.as_deref(), Some("00617F08299329D189"));
    assert_eq!(
        direct("eventbridge-object-deleted.json")[0].kind,
        ObjectEventKind::Removed
    );
}

#[test]
fn keeps_the_raw_eventbridge_key_as_an_alternate_reading() {
    let mut event = fixture("eventbridge-object-created.json");
    event["detail"]["object"]["key"] = json!("a+b%20c");
    let Invocation::Direct(records) = decode_invocation(&event).unwrap() else {
        panic!("not direct");
    };
    let decoded = records[0].as_ref().unwrap();
    assert_eq!(decoded.key, "a b c");
    assert_eq!(decoded.alternate_key.as_deref(), Some("a+b%20c"));

    // A raw key that is not valid form encoding is taken as it is.
    event["detail"]["object"]["key"] = json!("100%");
    let Invocation::Direct(records) = decode_invocation(&event).unwrap() else {
        panic!("not direct");
    };
    assert_eq!(records[0].as_ref().unwrap().key, "100%");
}

#[test]
fn other_s3_event_types_decode_as_other() {
    let mut event = fixture("s3-put.json");
    event["Records"][0]["eventName"] = json!("ObjectRestore:Completed");
    assert_eq!(direct_value(&event)[0].kind, ObjectEventKind::Other);
    let mut event = fixture("eventbridge-object-created.json");
    event["detail-type"] = json!("Object Restore Completed");
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
