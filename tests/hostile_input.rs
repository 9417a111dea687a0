//! Hostile and broken input: hand-picked payloads with their expected outcome, and generated
//! ones. The decoder never panics; a payload is refused with a clear error, or each bad record or
//! message fails alone while the good ones are kept.

mod support;

use proptest::prelude::*;
use s3_replicator::HandlerError;
use s3_replicator::decode::{Invocation, MessageContent, decode_invocation};
use s3_replicator::handle_payload;
use serde_json::{Value, json};
use support::{World, WorldOptions, fixture, repo_root};

/// Counts of a decoded invocation: (good records, bad records, good messages, bad messages).
fn tally(invocation: &Invocation) -> (usize, usize, usize, usize) {
    match invocation {
        Invocation::TestEvent => (0, 0, 0, 0),
        Invocation::Direct(records) => {
            let bad = records.iter().filter(|r| r.is_err()).count();
            (records.len() - bad, bad, 0, 0)
        }
        Invocation::Queue(messages) => {
            let bad = messages
                .iter()
                .filter(|m| match &m.content {
                    Err(_) => true,
                    Ok(MessageContent::Objects(objects)) => objects.iter().any(Result::is_err),
                    Ok(MessageContent::TestEvent) => false,
                })
                .count();
            (0, 0, messages.len() - bad, bad)
        }
    }
}

/// One hand-picked payload from `tests/fixtures/hostile-payloads.json`.
struct Case {
    name: String,
    payload: Value,
    /// `None` when the payload is refused; else (good records, bad records, good messages, bad
    /// messages).
    expected: Option<(usize, usize, usize, usize)>,
}

fn hostile_cases() -> Vec<Case> {
    let path = repo_root().join("tests/fixtures/hostile-payloads.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    cases
        .into_iter()
        .map(|case| {
            let name = case["name"].as_str().unwrap().to_string();
            let expect = case["expect"].as_str().unwrap();
            let expected = (expect != "refused").then(|| {
                let mut expected = (0, 0, 0, 0);
                for part in expect.split(',') {
                    let (what, count) = part.split_once(':').unwrap();
                    let count: usize = count.parse().unwrap();
                    match what {
                        "ok" => expected.0 = count,
                        "record_errors" => expected.1 = count,
                        "messages_ok" => expected.2 = count,
                        "message_errors" => expected.3 = count,
                        other => panic!("{name}: unknown expectation {other}"),
                    }
                }
                expected
            });
            Case {
                name,
                payload: case["payload"].clone(),
                expected,
            }
        })
        .collect()
}

#[test]
fn hand_picked_hostile_payloads_end_as_expected() {
    for Case {
        name,
        payload,
        expected,
    } in hostile_cases()
    {
        let decoded = decode_invocation(&payload);
        let Some(expected) = expected else {
            let error = decoded.expect_err(&name).to_string();
            assert!(error.starts_with("unrecognised payload"), "{name}: {error}");
            continue;
        };
        let counts = tally(&decoded.unwrap_or_else(|e| panic!("{name}: refused: {e}")));
        assert_eq!(counts, expected, "{name}");
    }
}

/// The same payloads through the whole handler, with a replicator on the emulator (so that what
/// the function logs about them is in the captured logs the run's scan reads): refused payloads
/// fail the invocation, a direct event with a bad record fails it, and a queue batch fails only
/// its bad messages.
#[tokio::test]
async fn hand_picked_hostile_payloads_through_the_handler() {
    let world = World::new("hostile", WorldOptions::default()).await;
    let replicator = world.replicator().await;
    let mut checked = 0;
    for Case {
        name,
        payload,
        expected,
    } in hostile_cases()
    {
        let result = handle_payload(&payload, &replicator).await;
        match expected {
            None => assert!(
                matches!(result, Err(HandlerError::UnrecognizedPayload(_))),
                "{name}: {result:?}"
            ),
            Some((_, _, _, message_errors)) if message_errors > 0 => {
                let response = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let failures = response["batchItemFailures"].as_array().unwrap().len();
                assert!(failures >= message_errors, "{name}: {response}");
            }
            Some((_, record_errors, _, _)) if record_errors > 0 => assert!(
                matches!(result, Err(HandlerError::ObjectsFailed { failed, .. }) if failed >= record_errors),
                "{name}: {result:?}"
            ),
            Some(_) => continue,
        }
        checked += 1;
    }
    assert!(checked >= 25, "{checked} cases checked");
}

#[test]
fn ten_thousand_records_in_one_event_decode_one_by_one() {
    let mut event = fixture("s3-put.json");
    let record = event["Records"][0].clone();
    let mut records = vec![record; 10_000];
    records[1234]["s3"]["object"]["key"] = json!("%zz");
    event["Records"] = Value::Array(records);
    let decoded = decode_invocation(&event).unwrap();
    assert_eq!(tally(&decoded), (9_999, 1, 0, 0));
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        prop::sample::select(vec![
            "Records",
            "aws:s3",
            "aws:sqs",
            "aws:sns",
            "aws.s3",
            "Notification",
            "s3:TestEvent",
            "Object Created",
            "ObjectCreated:Put",
            "%",
            "%zz",
            "%C3",
            "+",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "Records",
                    "eventSource",
                    "EventSource",
                    "s3",
                    "bucket",
                    "object",
                    "key",
                    "name",
                    "body",
                    "messageId",
                    "Sns",
                    "Message",
                    "Type",
                    "source",
                    "detail",
                    "detail-type",
                    "Event",
                    "eventName",
                    "size",
                ])
                .prop_map(str::to_string),
                inner,
                0..6,
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_json_never_panics(payload in arbitrary_json()) {
        let _ = decode_invocation(&payload).map(|invocation| tally(&invocation));
    }

    #[test]
    fn arbitrary_keys_decode_or_fail_alone(key in ".{0,64}", noise in "[%+a-zA-Z0-9]{0,16}") {
        let mut event = fixture("s3-put.json");
        let good = event["Records"][0].clone();
        event["Records"][0]["s3"]["object"]["key"] = json!(format!("{key}{noise}"));
        event["Records"].as_array_mut().unwrap().push(good);
        let decoded = decode_invocation(&event).unwrap();
        let (ok, bad, _, _) = tally(&decoded);
        prop_assert_eq!(ok + bad, 2);
        prop_assert!(ok >= 1, "the good record was lost");
    }

    #[test]
    fn arbitrary_sqs_bodies_fail_only_their_message(body in ".{0,200}") {
        let mut batch = fixture("sqs-s3.json");
        batch["Records"][0]["body"] = json!(body);
        let decoded = decode_invocation(&batch).unwrap();
        let (_, _, messages_ok, messages_bad) = tally(&decoded);
        prop_assert_eq!(messages_ok + messages_bad, 2);
        prop_assert!(messages_ok >= 1, "the good message was lost");
    }

    #[test]
    fn truncated_payloads_never_panic(cut in 0usize..2_000) {
        let text = fixture("sqs-sns-s3.json").to_string();
        let cut = cut.min(text.len());
        if let Ok(value) = serde_json::from_slice::<Value>(&text.as_bytes()[..cut]) {
            let _ = decode_invocation(&value);
        }
    }
}
