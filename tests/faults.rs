//! Nothing lost under faults: 1,000 objects through event mode (SQS batches) and through a
//! backfill, with 20% of the function's S3 requests answered 503 SlowDown, 500 InternalError, a
//! reset connection or a stall past the attempt timeout (by a proxy, before they reach S3). The
//! test drives what SQS redelivery and re-invocation would do, and checks that every object ends
//! in B intact, that nothing reported copied is missing, and that nothing reported failed was in
//! fact copied.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use s3_replicator::backfill::{BackfillError, BackfillRequest, SelfInvoker, run_backfill};
use s3_replicator::handle_payload;
use serde_json::{Value, json};
use support::fault_proxy::FaultProxy;
use support::{World, WorldOptions, etags, fixture, s3_event};

const OBJECTS: usize = 1000;
const FAULT_PERCENT: u64 = 20;
const FAULTY_CLIENT: &[(&str, &str)] = &[
    ("S3_ATTEMPT_TIMEOUT", "1s"),
    ("S3_MAX_ATTEMPTS", "3"),
    ("S3_RETRY_MODE", "standard"),
];

async fn put_objects(world: &World) {
    futures::stream::iter(0..OBJECTS)
        .map(|i| async move {
            world
                .admin_a
                .put_object()
                .bucket(&world.source_bucket)
                .key(format!("faults/{i:04} object.txt"))
                .metadata("index", i.to_string())
                .content_type("text/plain")
                .body(
                    format!("object {i} {}", "x".repeat(i % 97))
                        .into_bytes()
                        .into(),
                )
                .send()
                .await
                .unwrap();
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// A world whose source holds the objects, and a proxy faulting the requests sent through it.
async fn faulty_world(name: &str) -> (World, FaultProxy) {
    let world = World::new(name, WorldOptions::default()).await;
    put_objects(&world).await;
    let proxy = FaultProxy::start(
        &world.emulator.endpoint,
        FAULT_PERCENT,
        Duration::from_secs(2),
    )
    .await;
    (world, proxy)
}

/// Every replica equals its source (ETag: an MD5 of the bytes) and carries its metadata.
async fn assert_replicated_intact(world: &World) {
    let source = etags(&world.admin_a, &world.source_bucket, "").await;
    let replicas = etags(&world.admin_b, &world.destination_bucket, "").await;
    assert_eq!(replicas, source, "B differs from A");
    let heads: Vec<_> = futures::stream::iter(source.keys())
        .map(|key| async move {
            let head = world.destination_head(key).await;
            (key.clone(), head)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (key, head) in heads {
        let index = key["faults/".len()..]["0000".len() - 4..]
            .split(' ')
            .next()
            .unwrap();
        let index: usize = index.parse().unwrap();
        assert_eq!(
            head.metadata().unwrap().get("index").map(String::as_str),
            Some(index.to_string().as_str()),
            "{key}"
        );
        assert_eq!(head.content_type(), Some("text/plain"), "{key}");
    }
}

fn batch(messages: &[(String, Value)]) -> Value {
    let template = fixture("sqs-s3.json")["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            let mut record = template.clone();
            record["messageId"] = json!(id);
            record["body"] = json!(body.to_string());
            record
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_mode_loses_nothing_under_faults() {
    let (world, proxy) = faulty_world("faultsevents").await;
    let replicator = world
        .replicator_via(&proxy.endpoint, "us-east-1", FAULTY_CLIENT)
        .await;

    let mut pending: Vec<(String, Value)> = (0..OBJECTS)
        .map(|i| {
            let key = format!("faults/{i:04} object.txt");
            (
                format!("message-{i}"),
                s3_event("s3-put.json", &world.source_bucket, &key),
            )
        })
        .collect();
    let key_of = |id: &str| {
        let i: usize = id["message-".len()..].parse().unwrap();
        format!("faults/{i:04} object.txt")
    };
    let mut rounds = Vec::new();
    while !pending.is_empty() {
        assert!(
            rounds.len() < 10,
            "still {} messages failing after 10 deliveries",
            pending.len()
        );
        // Batches of 10, twenty invocations at a time, as an SQS event source mapping would.
        let responses: Vec<Value> = futures::stream::iter(pending.chunks(10))
            .map(|chunk| {
                let replicator = &replicator;
                async move { handle_payload(&batch(chunk), replicator).await.unwrap() }
            })
            .buffer_unordered(20)
            .collect()
            .await;
        let mut failed = Vec::new();
        for response in &responses {
            for failure in response["batchItemFailures"].as_array().unwrap() {
                failed.push(failure["itemIdentifier"].as_str().unwrap().to_string());
            }
        }
        // What the function reported: succeeded messages must be in B intact, failed ones not
        // (every fault happens before a request reaches S3).
        let replicas = etags(&world.admin_b, &world.destination_bucket, "").await;
        let source = etags(&world.admin_a, &world.source_bucket, "").await;
        let failed_set: BTreeSet<&String> = failed.iter().collect();
        for (id, _) in &pending {
            let key = key_of(id);
            if failed_set.contains(id) {
                assert!(
                    !replicas.contains_key(&key),
                    "{key} reported failed but is in B"
                );
            } else {
                assert_eq!(
                    replicas.get(&key),
                    source.get(&key),
                    "{key} reported copied"
                );
            }
        }
        rounds.push((pending.len(), failed.len()));
        pending.retain(|(id, _)| failed_set.contains(id));
    }
    assert_replicated_intact(&world).await;
    assert!(proxy.stats.faults() > 0);
    println!(
        "event mode: {OBJECTS} objects, deliveries per round (sent, failed): {rounds:?}; proxy: {}; losses 0",
        proxy.stats.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_loses_nothing_under_faults() {
    let (world, proxy) = faulty_world("faultsbackfill").await;
    let mut env = FAULTY_CLIENT.to_vec();
    env.push(("BACKFILL_CONCURRENCY", "16"));
    let replicator = world
        .replicator_via(&proxy.endpoint, "us-east-1", &env)
        .await;

    let mut copied = 0;
    let mut runs = Vec::new();
    let (mut slow_downs, mut lowest_concurrency) = (0, 16);
    loop {
        assert!(
            runs.len() < 10,
            "backfill still failing after 10 runs: {runs:?}"
        );
        let result = run_backfill(
            &BackfillRequest::default(),
            &replicator,
            None,
            SelfInvoker::default(),
        )
        .await;
        let report = match result {
            Ok(report) => serde_json::to_value(report).unwrap(),
            Err(BackfillError::ObjectsFailed { report, .. }) => report,
            Err(BackfillError::Listing {
                error,
                copied: done,
                ..
            }) => {
                runs.push(format!(
                    "listing failed after {done} copies: {}",
                    error.code()
                ));
                copied += done;
                continue;
            }
            Err(other) => panic!("{other}"),
        };
        copied += report["copied"].as_u64().unwrap();
        slow_downs += report["slow_downs"].as_u64().unwrap();
        lowest_concurrency = lowest_concurrency.min(report["lowest_concurrency"].as_u64().unwrap());
        runs.push(format!(
            "copied {} failed {} (503s {}, concurrency lowest {} last {})",
            report["copied"],
            report["failed"],
            report["slow_downs"],
            report["lowest_concurrency"],
            report["concurrency"]
        ));
        if report["failed"] == 0 && report["resume"].is_null() {
            break;
        }
    }
    assert_eq!(
        copied as usize, OBJECTS,
        "every object copied exactly once across runs: {runs:?}"
    );
    assert_replicated_intact(&world).await;
    assert!(proxy.stats.faults() > 0);
    // The client counted the 503s the proxy answered (never more: a stalled one arrives after
    // the attempt timed out), the reports counted them, and the backfill slowed down.
    let answered = proxy.stats.slow_down.load(Ordering::Relaxed);
    let counted = replicator.clients().slow_downs();
    assert!(answered > 0);
    assert!(
        counted <= answered,
        "{counted} counted, {answered} answered"
    );
    assert!(slow_downs > 0 && slow_downs <= counted);
    assert!(
        lowest_concurrency < 16,
        "concurrency never lowered: {runs:?}"
    );
    println!(
        "backfill: {OBJECTS} objects, runs: {runs:?}; 503s counted by the client {counted}; proxy: {}; losses 0",
        proxy.stats.summary()
    );
}
