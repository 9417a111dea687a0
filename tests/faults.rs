//! Nothing lost under faults: 1,000 objects through event mode (SQS batches) and through a
//! backfill, with 20% of the function's S3 requests faulted by a proxy: answered 503 SlowDown or
//! 500 InternalError, reset before they reach S3, or applied by S3 with the reply lost (held past
//! the client's attempt timeout, or cut). The test drives what SQS redelivery and re-invocation
//! would do, and checks that every object reported copied is in B intact, that every object ends
//! in B intact, and that objects reported failed but found in B (a copy applied whose reply was
//! lost: the function cannot know) are counted and never outnumber the replies the proxy lost.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use s3_replicator::backfill::{BackfillError, BackfillRequest, run_backfill};
use s3_replicator::handle_payload;
use s3_replicator::invoke::SelfInvoker;
use serde_json::{Value, json};
use support::fault_proxy::{FaultPlan, FaultProxy};
use support::{World, WorldOptions, etags, fixture, s3_event};

const OBJECTS: usize = 1000;
/// The client's attempt timeout (the function's default): far above any round trip to the
/// emulator, even on a loaded machine (each run prints the slowest it saw), so that only a held
/// reply makes it fire.
const ATTEMPT_TIMEOUT_SECONDS: u64 = 30;
const PLAN: FaultPlan = FaultPlan {
    percent: 20,
    hold: Duration::from_secs(3 * ATTEMPT_TIMEOUT_SECONDS),
    max_holds: 2,
    latency: (Duration::ZERO, Duration::ZERO),
    untagged: false,
};
const FAULTY_CLIENT: &[(&str, &str)] = &[
    ("S3_ATTEMPT_TIMEOUT", "30s"),
    ("S3_MAX_ATTEMPTS", "3"),
    ("S3_RETRY_MODE", "standard"),
];

/// The bytes of object `i`.
fn body(i: usize) -> Vec<u8> {
    format!("object {i} {}", "x".repeat(i % 97)).into_bytes()
}

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
                .body(body(i).into())
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
    let proxy = FaultProxy::start(&world.emulator.endpoint, PLAN).await;
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
        let index = key["faults/".len()..].split(' ').next().unwrap();
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

    // Each notification carries its object's ETag and size, as S3's do.
    let source = etags(&world.admin_a, &world.source_bucket, "").await;
    let mut pending: Vec<(String, Value)> = (0..OBJECTS)
        .map(|i| {
            let key = format!("faults/{i:04} object.txt");
            let mut event = s3_event("s3-put.json", &world.source_bucket, &key);
            let object = &mut event["Records"][0]["s3"]["object"];
            object["eTag"] = json!(source[&key].trim_matches('"'));
            object["size"] = json!(body(i).len());
            (format!("message-{i}"), event)
        })
        .collect();
    let key_of = |id: &str| {
        let i: usize = id["message-".len()..].parse().unwrap();
        format!("faults/{i:04} object.txt")
    };
    let mut rounds = Vec::new();
    let mut failed_but_in_b = 0;
    while !pending.is_empty() {
        assert!(
            rounds.len() < 10,
            "still {} messages failing after 10 deliveries",
            pending.len()
        );
        // Batches of 10, ten invocations at a time, as an SQS event source mapping would.
        let responses: Vec<Value> = futures::stream::iter(pending.chunks(10))
            .map(|chunk| {
                let replicator = &replicator;
                async move { handle_payload(&batch(chunk), replicator).await.unwrap() }
            })
            .buffer_unordered(10)
            .collect()
            .await;
        let mut failed = Vec::new();
        for response in &responses {
            for failure in response["batchItemFailures"].as_array().unwrap() {
                failed.push(failure["itemIdentifier"].as_str().unwrap().to_string());
            }
        }
        // What the function reported: succeeded messages must be in B intact. A failed one may be
        // in B too, when a copy was applied and its reply lost; then it is intact.
        let replicas = etags(&world.admin_b, &world.destination_bucket, "").await;
        let source = etags(&world.admin_a, &world.source_bucket, "").await;
        let failed_set: BTreeSet<&String> = failed.iter().collect();
        for (id, _) in &pending {
            let key = key_of(id);
            if failed_set.contains(id) {
                if let Some(replica) = replicas.get(&key) {
                    assert_eq!(Some(replica), source.get(&key), "{key} reported failed");
                    failed_but_in_b += 1;
                }
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
    assert_faults_seen(&proxy);
    let lost = proxy.stats.replies_lost();
    assert!(
        failed_but_in_b <= lost,
        "{failed_but_in_b} reported failed but in B, only {lost} replies lost"
    );
    support::report_figures(&format!(
        "event mode: {OBJECTS} objects, deliveries per round (sent, failed): {rounds:?}; reported failed but in B: {failed_but_in_b}; proxy: {}; losses 0",
        proxy.stats.summary()
    ));
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
    // No object is reported copied twice; those never reported copied reached B through a copy
    // whose reply was lost (a later run found them current).
    let copied = copied as usize;
    assert!(copied <= OBJECTS, "{copied} copies reported: {runs:?}");
    let failed_but_in_b = OBJECTS - copied;
    let lost = proxy.stats.replies_lost();
    assert!(
        failed_but_in_b as u64 <= lost,
        "{failed_but_in_b} objects in B never reported copied, only {lost} replies lost: {runs:?}"
    );
    assert_replicated_intact(&world).await;
    assert_faults_seen(&proxy);
    // The client counted the 503s the proxy answered (never more: the emulator answers none),
    // the reports counted them, and the backfill slowed down.
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
    support::report_figures(&format!(
        "backfill: {OBJECTS} objects, runs: {runs:?}; reported failed but in B: {failed_but_in_b}; 503s counted by the client {counted}; proxy: {}; losses 0",
        proxy.stats.summary()
    ));
}

/// Every kind of fault happened, the held replies included: the attempt timeout fired by design.
fn assert_faults_seen(proxy: &FaultProxy) {
    let stats = &proxy.stats;
    for (kind, count) in [
        ("503", &stats.slow_down),
        ("500", &stats.internal_error),
        ("reset", &stats.reset),
        ("held", &stats.held),
    ] {
        assert!(
            count.load(Ordering::Relaxed) > 0,
            "no {kind} fault: {}",
            stats.summary()
        );
    }
}
