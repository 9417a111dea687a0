//! Backfill and S3 Batch Operations on the local S3 emulator with cross-account authorization.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use futures::StreamExt;
use s3_replicator::backfill::{BackfillReport, BackfillRequest, run_backfill};
use s3_replicator::handle_payload;
use s3_replicator::invoke::SelfInvoker;
use serde_json::{Value, json};
use support::fault_proxy::{FaultPlan, FaultProxy};
use support::{FUNCTION_ARN, World, WorldOptions, batch_job, etags, fixture, result_codes};

async fn put_many(client: &Client, bucket: &str, objects: Vec<(String, Vec<u8>)>) {
    futures::stream::iter(objects)
        .map(|(key, body)| async move {
            client
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(body.into())
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

async fn backfill(world: &World, request: Value, deadline: Option<SystemTime>) -> BackfillReport {
    let request = BackfillRequest::from_value(&request).unwrap();
    run_backfill(
        &request,
        &world.replicator().await,
        deadline,
        SelfInvoker::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("backfill: {e}"))
}

// One scenario read top to bottom: the first run, its hops, and the re-run over the same buckets.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfills_what_b_lacks_resumes_past_the_deadline_and_repeats_nothing() {
    let world = World::new(
        "backfill",
        WorldOptions {
            destination_prefix: "replica/".into(),
            ..Default::default()
        },
    )
    .await;
    let mut source = Vec::new();
    for i in 0..2000 {
        source.push((
            format!("data/part-{i:04}.csv"),
            format!("row {i}\n").into_bytes(),
        ));
    }
    for i in 0..400 {
        source.push((format!("logs/{i}.log"), format!("log {i}").into_bytes()));
    }
    for i in 0..200 {
        source.push((format!("root-{i} with space+plus.txt"), vec![b'r'; i]));
    }
    put_many(&world.admin_a, &world.source_bucket, source.clone()).await;
    // B already holds 500 current replicas and 100 stale ones, and one object A never had.
    let mut existing: Vec<(String, Vec<u8>)> = source[..500]
        .iter()
        .map(|(k, v)| (format!("replica/{k}"), v.clone()))
        .collect();
    existing.extend(
        source[500..600]
            .iter()
            .map(|(k, _)| (format!("replica/{k}"), b"stale".to_vec())),
    );
    existing.push(("replica/only-in-b.txt".into(), b"orphan".to_vec()));
    put_many(&world.admin_b, &world.destination_bucket, existing).await;
    let total = source.len() as u64;
    let to_copy = total - 500;
    let bytes_to_copy: i64 = source[500..].iter().map(|(_, v)| v.len() as i64).sum();

    let dry = backfill(&world, json!({"dry_run": true}), None).await;
    assert_eq!(
        (
            dry.listed,
            dry.planned,
            dry.planned_bytes,
            dry.unchanged,
            dry.copied
        ),
        (total, to_copy, bytes_to_copy, 500, 0)
    );
    assert_eq!(dry.resume, None);
    assert_eq!(
        etags(&world.admin_b, &world.destination_bucket, "")
            .await
            .len(),
        601
    );

    // A deadline already passed: each hop finishes what it started (at least one object) and
    // says where to resume.
    let mut reports = Vec::new();
    let mut request = json!({});
    for _ in 0..2 {
        let report = backfill(&world, request.clone(), Some(SystemTime::now())).await;
        request = report.resume.clone().expect("a resume payload")["backfill"].clone();
        assert!(report.listed >= 1 && report.listed < total, "{report:?}");
        reports.push(report);
    }
    assert_eq!(request["hop"], 2);
    let last = backfill(
        &world,
        request,
        Some(SystemTime::now() + Duration::from_secs(600)),
    )
    .await;
    assert_eq!(last.resume, None);
    reports.push(last);
    let sum = |f: fn(&BackfillReport) -> u64| reports.iter().map(f).sum::<u64>();
    assert_eq!(
        sum(|r| r.listed),
        total,
        "every object examined exactly once"
    );
    assert_eq!(sum(|r| r.copied), to_copy, "nothing copied twice");
    assert_eq!(sum(|r| r.unchanged), 500);
    assert_eq!(sum(|r| r.failed), 0);
    assert_eq!(reports.iter().map(|r| r.bytes).sum::<i64>(), bytes_to_copy);

    let source_etags = etags(&world.admin_a, &world.source_bucket, "").await;
    let mut replica_etags = etags(&world.admin_b, &world.destination_bucket, "replica/").await;
    assert!(replica_etags.remove("replica/only-in-b.txt").is_some());
    let replica_etags: BTreeMap<String, String> = replica_etags
        .into_iter()
        .map(|(k, v)| (k["replica/".len()..].to_string(), v))
        .collect();
    assert_eq!(replica_etags, source_etags);

    let rerun = backfill(&world, json!({}), None).await;
    assert_eq!(
        (rerun.listed, rerun.copied, rerun.unchanged),
        (total, 0, total)
    );

    // A prefix limits the backfill to its keys.
    world.put_source("logs/new.log", b"new").await;
    world.put_source("data/new.csv", b"new").await;
    let logs = backfill(&world, json!({"prefix": "logs/"}), None).await;
    assert_eq!((logs.listed, logs.copied), (401, 1));
}

#[tokio::test]
async fn backfill_without_the_bucket_policy_fails_loudly() {
    let world = World::new(
        "backfillnopolicy",
        WorldOptions {
            without_bucket_policy: true,
            ..Default::default()
        },
    )
    .await;
    world.put_source("a.txt", b"a").await;
    world.put_source("b.txt", b"b").await;
    let attach = |keep: &'static str| {
        let mut policy = world.grant().bucket_policy();
        policy["Statement"]
            .as_array_mut()
            .unwrap()
            .retain(|statement| statement["Sid"] == keep);
        world
            .admin_b
            .put_bucket_policy()
            .bucket(&world.destination_bucket)
            .policy(policy.to_string())
            .send()
    };

    // No grant at all: the backfill cannot even take its lock, and says which grant is missing.
    let backfill = || async {
        handle_payload(&json!({"backfill": {}}), &world.replicator().await)
            .await
            .unwrap_err()
            .to_string()
    };
    let error = backfill().await;
    assert!(error.contains("backfill lock"), "{error}");
    assert!(error.contains("must allow s3:PutObject"), "{error}");

    // Writes without the listing grant: the listing fails, named, with where to resume.
    attach("AllowS3ReplicatorWrites").await.unwrap();
    let error = backfill().await;
    assert!(error.contains("ListObjectsV2"), "{error}");
    assert!(error.contains("must allow s3:ListBucket"), "{error}");
    assert!(error.contains("resume with"), "{error}");

    // Listing without the writes: the lock is refused again, before any copy is tried.
    attach("AllowS3ReplicatorBackfillListing").await.unwrap();
    let error = backfill().await;
    assert!(error.contains("must allow s3:PutObject"), "{error}");
    assert!(world.destination_keys().await.is_empty());

    // Once the grant is in place, a re-run copies them.
    world.attach_bucket_policy().await;
    let report = handle_payload(&json!({"backfill": {}}), &world.replicator().await)
        .await
        .unwrap();
    assert_eq!(report["copied"], 2, "{report}");
}

/// Without `s3:GetObject` in B's policy, S3 answers a read of a missing marker and of a present one
/// alike (403): the first backfill takes the lock by creating it; the next finds the marker there
/// and unreadable, and says which grant is missing instead of retrying.
#[tokio::test]
async fn a_lock_that_cannot_be_read_is_named_not_retried() {
    let world = World::new(
        "bflocknoget",
        WorldOptions {
            drop_bucket_actions: vec!["s3:GetObject".to_string()],
            ..Default::default()
        },
    )
    .await;
    world.put_source("a.txt", b"a").await;
    let replicator = world.replicator().await;
    let report = handle_payload(&json!({"backfill": {}}), &replicator)
        .await
        .unwrap();
    assert_eq!(report["copied"], 1, "{report}");
    let (second, operations) = world
        .operations_during(handle_payload(&json!({"backfill": {}}), &replicator))
        .await;
    let error = second.unwrap_err().to_string();
    assert!(error.contains("backfill lock"), "{error}");
    assert!(error.contains("s3:GetObject"), "{error}");
    // One read and one refused create: no retries. The listings and the encryption reads start
    // beside the lock (a page of each bucket, each bucket's setting read once) and copy nothing.
    assert_eq!(operations.get("GET"), Some(&1), "{operations:?}");
    assert_eq!(operations.get("PUT"), Some(&1), "{operations:?}");
    let reads = operations.get("GET ?encryption").copied().unwrap_or(0);
    let listings = operations
        .iter()
        .filter(|(operation, _)| operation.contains("list-type"))
        .map(|(_, count)| count)
        .sum::<u64>();
    assert!(reads <= 2 && listings <= 2, "{operations:?}");
    assert_eq!(operations.values().sum::<u64>(), 2 + reads + listings);
}

#[tokio::test]
async fn backfills_across_regions() {
    let world = World::new(
        "backfillregion",
        WorldOptions {
            source_region: Some("us-east-1"),
            destination_region: Some("ap-southeast-2"),
            ..Default::default()
        },
    )
    .await;
    for i in 0..30 {
        world.put_source(&format!("k{i:02}"), b"x").await;
    }
    let report = backfill(&world, json!({}), None).await;
    assert_eq!((report.listed, report.copied), (30, 30));
    assert_eq!(world.destination_keys().await.len(), 30);

    let misconfigured = world
        .replicator_with("us-east-1", &[("DESTINATION_REGION", "us-east-1")])
        .await;
    let error = handle_payload(&json!({"backfill": {}}), &misconfigured)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("(S3 reports ap-southeast-2): set DESTINATION_REGION"),
        "{error}"
    );
}

#[tokio::test]
async fn answers_batch_operations_tasks_in_both_schema_versions() {
    let world = World::new("batchops", WorldOptions::default()).await;
    world
        .put_source("customer images/image+1.jpg", b"jpeg")
        .await;
    world.put_source("throttled.jpg", b"slow").await;
    let replicator = world.replicator().await;
    let src = world.source_bucket.as_str();

    for schema in ["batch-operations-v1.json", "batch-operations-v2.json"] {
        let job = batch_job(
            schema,
            &[
                (src, "customer images/image+1.jpg"),
                (src, "never-existed.jpg"),
                ("another-bucket", "customer images/image+1.jpg"),
            ],
        );
        let response = handle_payload(&job, &replicator).await.unwrap();
        assert_eq!(
            response["invocationSchemaVersion"],
            fixture(schema)["invocationSchemaVersion"]
        );
        assert_eq!(response["invocationId"], fixture(schema)["invocationId"]);
        assert_eq!(response["treatMissingKeysAs"], "PermanentFailure");
        let results = result_codes(&response);
        assert_eq!(results[0].0, "Succeeded", "{schema}: {results:?}");
        assert!(results[0].1.starts_with("copied 4 bytes"), "{results:?}");
        assert_eq!(results[1].0, "PermanentFailure");
        assert!(results[1].1.contains("no longer exists"), "{results:?}");
        assert_eq!(results[2].0, "PermanentFailure");
        assert!(results[2].1.contains("refused"), "{results:?}");
        assert_eq!(response["results"][1]["taskId"], "task-1");
    }
    assert_eq!(
        world.destination_body("customer images/image+1.jpg").await,
        b"jpeg"
    );

    // userArguments can turn a missing source into success.
    let mut job = batch_job("batch-operations-v2.json", &[(src, "never-existed.jpg")]);
    job["job"]["userArguments"]["treatMissingSourceAs"] = json!("Succeeded");
    let response = handle_payload(&job, &replicator).await.unwrap();
    assert_eq!(result_codes(&response)[0].0, "Succeeded");

    // S3 throttling outlasting the SDK's retries: a temporary failure, which S3 retries.
    world.emulator.harness(
        "fault",
        json!({"path_contains": "throttled.jpg", "status": 503, "code": "SlowDown", "count": 20}),
    );
    let job = batch_job("batch-operations-v1.json", &[(src, "throttled.jpg")]);
    let response = handle_payload(&job, &replicator).await.unwrap();
    let results = result_codes(&response);
    assert_eq!(results[0].0, "TemporaryFailure", "{results:?}");
    assert!(results[0].1.contains("503"), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continues_itself_and_fans_out_through_asynchronous_invocations() {
    let world = World::new("chain", WorldOptions::default()).await;
    let mut objects = Vec::new();
    for shard in ["a", "b", "c/deeper"] {
        for i in 0..120 {
            objects.push((format!("{shard}/{i:03}"), shard.as_bytes().to_vec()));
        }
    }
    for i in 0..20 {
        objects.push((format!("root-{i}"), b"root".to_vec()));
    }
    let total = objects.len() as u64;
    put_many(&world.admin_a, &world.source_bucket, objects).await;

    let lambda = world.lambda_client().await;
    let replicator = world.replicator().await;
    let context = |deadline: SystemTime| s3_replicator::InvocationContext {
        deadline: Some(deadline),
        function_arn: Some(FUNCTION_ARN),
        lambda: Some(&lambda),
        function_name: None,
        request_id: None,
    };

    let first = s3_replicator::handle_with_context(
        &json!({"backfill": {"fan_out": true}}),
        &replicator,
        context(SystemTime::now() + Duration::from_secs(600)),
    )
    .await
    .unwrap();
    assert_eq!(
        first["shards_started"],
        json!(["a/", "b/", "c/"]),
        "{first}"
    );
    assert_eq!(
        (first["listed"].as_u64(), first["copied"].as_u64()),
        (Some(20), Some(20))
    );
    let mut copied = 20;

    // Deliver the queued asynchronous invocations as Lambda would: the shards' first hops with
    // their deadline already passed (each copies what it started, then continues itself), their
    // continuations with ample time (each finishes its shard).
    let mut delivered = 0;
    let mut continued = 0;
    loop {
        let queued = queued_invocations(&world);
        if queued.is_empty() {
            break;
        }
        for invocation in queued {
            assert_eq!(invocation["function_arn"], FUNCTION_ARN);
            let time = if delivered < 3 {
                Duration::ZERO
            } else {
                Duration::from_secs(600)
            };
            let report = s3_replicator::handle_with_context(
                &invocation["payload"],
                &replicator,
                context(SystemTime::now() + time),
            )
            .await
            .unwrap();
            if report["continued"] == true {
                continued += 1;
            }
            assert_eq!(report["failed"], 0, "{report}");
            assert_eq!(
                report["continued"],
                report["resume"].is_object(),
                "{report}"
            );
            copied += report["copied"].as_u64().unwrap();
            delivered += 1;
        }
    }
    assert_eq!(continued, 3, "each shard's first hop continues once");
    assert_eq!(delivered, 6, "the three shards and one continuation each");
    assert_eq!(copied, total, "every object copied exactly once");
    assert_eq!(world.destination_keys().await.len() as u64, total);
}

/// The asynchronous invocations the world's function made (`function_arn`, `payload`), taken
/// from the emulator's queue.
fn queued_invocations(world: &World) -> Vec<Value> {
    let queued = world
        .emulator
        .harness("invocations", json!({"role_arn": world.role_arn}));
    queued["invocations"].as_array().unwrap().clone()
}

/// The payloads of [`queued_invocations`].
fn queued_payloads(world: &World) -> Vec<Value> {
    queued_invocations(world)
        .into_iter()
        .map(|invocation| invocation["payload"].clone())
        .collect()
}

// One scenario read top to bottom: a chain, a second start beside it, a duplicate delivery of
// one of its hops, its end, then two fan-outs over the same prefix.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn a_second_backfill_over_a_running_prefix_is_refused_and_a_duplicate_hop_copies_nothing() {
    let world = World::new("bflock", WorldOptions::default()).await;
    let mut objects = Vec::new();
    for shard in ["a", "b"] {
        for i in 0..30 {
            objects.push((format!("{shard}/{i:02}"), shard.as_bytes().to_vec()));
        }
    }
    let total = objects.len() as u64;
    put_many(&world.admin_a, &world.source_bucket, objects).await;
    let lambda = world.lambda_client().await;
    let replicator = world.replicator().await;
    let invoker = SelfInvoker {
        client: Some(&lambda),
        function_arn: Some(FUNCTION_ARN),
        request_id: None,
    };
    let run = |payload: &Value, deadline: SystemTime| {
        let request = BackfillRequest::from_value(&payload["backfill"]).unwrap();
        let replicator = &replicator;
        async move { run_backfill(&request, replicator, Some(deadline), invoker).await }
    };
    let ample = || SystemTime::now() + Duration::from_secs(600);

    // A chain whose first hop stops at once (deadline passed) and continues itself.
    let first = run(&json!({"backfill": {"continue": true}}), SystemTime::now())
        .await
        .unwrap();
    assert!(first.continued, "{first:?}");
    let mut copied = first.copied;
    let continuation = queued_payloads(&world);
    assert_eq!(continuation.len(), 1);

    // A second start over the same prefix is refused while the chain runs, before any copy.
    let (second, operations) = world
        .operations_during(run(&json!({"backfill": {}}), ample()))
        .await;
    let error = second.unwrap_err().to_string();
    assert!(error.contains("already running"), "{error}");
    assert!(
        !operations.keys().any(|op| op.contains("Copy")),
        "{operations:?}"
    );

    // The continuation runs (and continues again); delivered a second time, it copies nothing.
    let hop = run(&continuation[0], SystemTime::now()).await.unwrap();
    assert!(hop.continued && hop.copied >= 1, "{hop:?}");
    copied += hop.copied;
    let again = run(&continuation[0], ample()).await.unwrap();
    assert!(again.duplicate, "{again:?}");
    assert_eq!((again.listed, again.copied, again.continued), (0, 0, false));

    // The chain ends and frees the prefix: a new start runs, and finds nothing to copy.
    let rest = queued_payloads(&world);
    assert_eq!(rest.len(), 1, "only the chain's own continuation: {rest:?}");
    let last = run(&rest[0], ample()).await.unwrap();
    assert!(!last.continued && last.resume.is_none(), "{last:?}");
    copied += last.copied;
    assert_eq!(copied, total, "every object copied exactly once");
    let rerun = run(&json!({"backfill": {}}), ample()).await.unwrap();
    assert_eq!((rerun.listed, rerun.copied), (total, 0));

    // A fan-out reserves its shards before starting them: a second fan-out over the same prefix
    // is refused while the first one's shards have not finished, and starts nothing.
    let fan_out = json!({"backfill": {"fan_out": true}});
    let root = run(&fan_out, ample()).await.unwrap();
    assert_eq!(root.shards_started, ["a/", "b/"]);
    let shards = queued_payloads(&world);
    assert_eq!(shards.len(), 2);
    let refused = run(&fan_out, ample()).await.unwrap_err().to_string();
    assert!(refused.contains("already running"), "{refused}");
    assert!(queued_payloads(&world).is_empty(), "nothing started");
    for shard in &shards {
        let report = run(shard, ample()).await.unwrap();
        assert_eq!((report.copied, report.continued), (0, false), "{report:?}");
    }
    let after = run(&fan_out, ample()).await.unwrap();
    assert_eq!(after.shards_started, ["a/", "b/"]);
    assert_eq!(world.destination_keys().await.len() as u64, total);
}

/// `BACKFILL_CONCURRENCY` bounds the connections a backfill's copies hold, not its copies: a copy
/// in parts counts as `PART_CONCURRENCY` of them, so that a backfill of large objects stays within
/// the open files Lambda gives a function (1,024), as one of small objects does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_in_parts_count_their_part_concurrency_against_the_limit() {
    const LIMIT: u64 = 8;
    let world = World::new("bfparts", WorldOptions::default()).await;
    // Six objects written in three parts each (copied in parts), and six small ones.
    for i in 0..6 {
        let body = vec![b'a' + i; 11 * 1024 * 1024];
        let key = format!("mixed/large-{i}.bin");
        world
            .put_source_in_parts(&key, &body, 5 * 1024 * 1024)
            .await;
    }
    let small = (0..6)
        .map(|i| (format!("mixed/small-{i}.txt"), vec![b'a' + i; 100]))
        .collect();
    put_many(&world.admin_a, &world.source_bucket, small).await;
    // The latency keeps each request open long enough for the copies' requests to overlap.
    let plan = FaultPlan {
        percent: 0,
        hold: Duration::ZERO,
        max_holds: 0,
        latency: (Duration::from_millis(20), Duration::from_millis(60)),
        untagged: false,
    };
    let proxy = FaultProxy::start(&world.emulator.endpoint, plan).await;
    let limit = LIMIT.to_string();
    let env = [
        ("BACKFILL_CONCURRENCY", limit.as_str()),
        ("PART_CONCURRENCY", "4"),
        ("MULTIPART_THRESHOLD", "5MiB"),
    ];
    let replicator = world
        .replicator_via(&proxy.endpoint, &world.function_region, &env)
        .await;
    let request = BackfillRequest::from_value(&json!({"prefix": "mixed/"})).unwrap();
    let report = run_backfill(&request, &replicator, None, SelfInvoker::default())
        .await
        .unwrap_or_else(|e| panic!("backfill: {e}"));

    assert_eq!((report.copied, report.failed), (12, 0), "{report:?}");
    let source = etags(&world.admin_a, &world.source_bucket, "mixed/").await;
    let replicas = etags(&world.admin_b, &world.destination_bucket, "mixed/").await;
    assert_eq!(replicas, source);
    // The copies' connections, and beside them at most the two listings' (one per bucket).
    let most = proxy.stats.most_in_flight.load(Ordering::Relaxed);
    assert!(
        most <= LIMIT + 2,
        "{most} requests in flight at once, over the limit of {LIMIT} and the two listings"
    );
}
