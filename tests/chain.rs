//! Copies in parts that span invocations, on the local S3 emulator: hand-offs are forced by
//! `PARTS_PER_INVOCATION` or by the emulator holding part copies past a deadline, never by the
//! machine's speed.

mod support;

use std::time::{Duration, SystemTime};

use s3_replicator::{InvocationContext, Replicator, handle_payload, handle_with_context};
use serde_json::{Value, json};
use support::{FUNCTION_ARN, World, WorldOptions, failed_message_ids, put_in_parts, sqs_batch};

const MIB: usize = 1024 * 1024;

fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u64 * 2654435761 % 251) as u8 ^ seed)
        .collect()
}

/// The function with 5 MiB parts, copying at most `per_invocation` parts of an object in one
/// invocation.
async fn chained(world: &World, per_invocation: &str) -> Replicator {
    world
        .replicator_with(
            "us-east-1",
            &[
                ("MULTIPART_THRESHOLD", "5MiB"),
                ("PART_CONCURRENCY", "4"),
                ("PARTS_PER_INVOCATION", per_invocation),
                ("S3_ATTEMPT_TIMEOUT", "120s"),
            ],
        )
        .await
}

async fn put_large(world: &World, key: &str, body: &[u8]) {
    put_in_parts(
        &world.admin_a,
        &world.source_bucket,
        key,
        body,
        5 * MIB,
        |create| create.tagging("tier=gold"),
    )
    .await;
}

async fn source_etag(world: &World, key: &str) -> String {
    let head = world
        .admin_a
        .head_object()
        .bucket(&world.source_bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    head.e_tag().unwrap().to_string()
}

/// Asserts that B holds `key` equal to A's: same ETag (so the same part layout), same bytes.
async fn assert_replica_equal(world: &World, key: &str, body: &[u8]) {
    let replica = world.destination_head(key).await;
    assert_eq!(
        replica.e_tag().unwrap(),
        source_etag(world, key).await,
        "the replica's ETag equals the source's"
    );
    assert!(
        world.destination_body(key).await == body,
        "the replica's bytes equal the source's"
    );
}

/// The payloads of the asynchronous invocations the world's function made, taken.
fn queued_payloads(world: &World) -> Vec<Value> {
    let queued = world
        .emulator
        .harness("invocations", json!({"role_arn": world.role_arn}));
    queued["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|invocation| {
            assert_eq!(invocation["function_arn"], FUNCTION_ARN);
            invocation["payload"].clone()
        })
        .collect()
}

/// The continuation payloads a summary returned (the function could not invoke itself).
fn resumes(summary: &Value) -> Vec<Value> {
    summary["resume"].as_array().cloned().unwrap_or_default()
}

/// Hands each continuation to the function (no invoker: each returns its own), until none is
/// left; the summaries, in order.
async fn run_chain(replicator: &Replicator, first: Vec<Value>) -> Vec<Value> {
    let mut pending = first;
    let mut summaries = Vec::new();
    while let Some(payload) = pending.pop() {
        assert!(payload["continue"].is_object(), "{payload}");
        assert!(
            summaries.len() < 20,
            "the chain does not end: {summaries:?}"
        );
        let summary = handle_payload(&payload, replicator).await.unwrap();
        pending.extend(resumes(&summary));
        summaries.push(summary);
    }
    summaries
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sqs_record_whose_copy_continues_elsewhere_is_not_a_failure_and_the_chain_completes() {
    let world = World::new("chainsqs", WorldOptions::default()).await;
    let replicator = chained(&world, "5").await;
    let lambda = world.lambda_client().await;
    let context = || InvocationContext {
        deadline: Some(SystemTime::now() + Duration::from_secs(600)),
        function_arn: Some(FUNCTION_ARN),
        lambda: Some(&lambda),
        function_name: None,
        request_id: None,
    };
    // 64 MiB in 13 parts of 5 MiB: at 5 parts per invocation, three invocations.
    let body = pattern(64 * MIB, 3);
    put_large(&world, "video/master.mov", &body).await;
    world.put_source("video/poster.jpg", b"poster").await;
    let batch = sqs_batch(&[
        world.s3_event_now("s3-put.json", "video/master.mov").await,
        world.s3_event_now("s3-put.json", "video/poster.jpg").await,
    ]);

    let response = handle_with_context(&batch, &replicator, context())
        .await
        .unwrap();
    assert_eq!(
        failed_message_ids(&response),
        Vec::<String>::new(),
        "a copy handed to its continuation is no batch item failure"
    );
    assert_eq!(world.destination_keys().await, ["video/poster.jpg"]);

    let mut invocations = 1;
    let mut last = Value::Null;
    loop {
        let queued = queued_payloads(&world);
        if queued.is_empty() {
            break;
        }
        assert_eq!(queued.len(), 1, "one continuation at a time: {queued:?}");
        assert!(invocations < 10, "the chain does not end");
        assert_eq!(queued[0]["continue"]["hop"], invocations + 1);
        last = handle_with_context(&queued[0], &replicator, context())
            .await
            .unwrap();
        invocations += 1;
        assert_eq!(last["failed"], 0, "{last}");
        assert!(
            last["resume"].is_null(),
            "the continuation was invoked: {last}"
        );
    }
    assert_eq!(invocations, 3, "13 parts at 5 per invocation");
    assert_eq!(
        (last["copied"].as_u64(), last["handed_off"].as_u64()),
        (Some(1), Some(0))
    );
    assert_replica_equal(&world, "video/master.mov", &body).await;
    assert_eq!(
        world.operations().get("UploadPartCopy").copied(),
        Some(13),
        "each part copied once: a continuation finds the parts done with ListParts"
    );
    assert_eq!(world.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_close_by_ends_the_invocation_in_a_hand_off_before_it() {
    let world = World::new("chaindeadline", WorldOptions::default()).await;
    // No limit on parts: only the deadline stops this copy.
    let replicator = world
        .replicator_with(
            "us-east-1",
            &[
                ("MULTIPART_THRESHOLD", "5MiB"),
                ("PART_CONCURRENCY", "4"),
                ("S3_ATTEMPT_TIMEOUT", "120s"),
            ],
        )
        .await;
    let body = pattern(40 * MIB, 5);
    put_large(&world, "dump.sql", &body).await;
    // The emulator lets two part copies through and holds every later one (until released):
    // parts that would still be running when Lambda stops the invocation.
    let hold = support::unique("deadline-parts");
    world.emulator.harness(
        "trigger",
        json!({"method": "PUT", "path_contains": format!("{}/dump.sql", world.destination_bucket),
               "query_contains": "partNumber=", "skip": 2, "count": 1000, "hold": hold}),
    );
    let event = world.s3_event_now("s3-put.json", "dump.sql").await;
    let deadline = SystemTime::now() + Duration::from_secs(20);
    let context = InvocationContext {
        deadline: Some(deadline),
        ..Default::default()
    };
    // Lambda stops the invocation at its deadline: the hop must have ended by then.
    let stop = tokio::time::Instant::now() + deadline.duration_since(SystemTime::now()).unwrap();
    let ended =
        tokio::time::timeout_at(stop, handle_with_context(&event, &replicator, context)).await;
    world.emulator.harness("release", json!({"name": hold}));
    let summary = ended
        .expect("the invocation ended before its deadline")
        .unwrap();
    assert_eq!(
        (summary["handed_off"].as_u64(), summary["copied"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    let summaries = run_chain(&replicator, resumes(&summary)).await;
    assert_eq!(summaries.last().unwrap()["copied"], 1, "{summaries:?}");
    assert_replica_equal(&world, "dump.sql", &body).await;
    assert_eq!(world.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_stopped_in_the_middle_leaves_no_upload_behind() {
    let world = World::new("chainstop", WorldOptions::default()).await;
    let replicator = chained(&world, "2").await;
    for key in ["lost.bin", "deleted.bin"] {
        put_large(&world, key, &pattern(16 * MIB, 1)).await;
    }
    let mut continuations = Vec::new();
    for key in ["lost.bin", "deleted.bin"] {
        let summary = world.put_event(&replicator, key).await.unwrap();
        assert_eq!(summary["handed_off"], 1, "{summary}");
        continuations.extend(resumes(&summary));
    }
    assert_eq!(world.open_uploads().await, 2);

    // The source is deleted mid-chain: the next hop aborts the upload and stops.
    world
        .admin_a
        .delete_object()
        .bucket(&world.source_bucket)
        .key("deleted.bin")
        .send()
        .await
        .unwrap();
    let deleted = continuations
        .iter()
        .find(|c| c["continue"]["key"] == "deleted.bin")
        .unwrap();
    let summary = handle_payload(deleted, &replicator).await.unwrap();
    assert_eq!(
        (summary["skipped"].as_u64(), summary["handed_off"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    assert_eq!(
        world.open_uploads().await,
        1,
        "the deleted source's upload is aborted"
    );

    // The other chain's continuation is lost: the cleanup command aborts its upload.
    let report = handle_payload(
        &json!({"uploads": {"older_than_hours": 0, "abort": true}}),
        &replicator,
    )
    .await
    .unwrap();
    assert_eq!(report["aborted"], 1, "{report}");
    assert_eq!(world.open_uploads().await, 0);
    assert!(world.destination_keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_overwritten_mid_chain_ends_with_the_new_version_in_b() {
    let world = World::new("chainnew", WorldOptions::default()).await;
    let replicator = chained(&world, "2").await;
    put_large(&world, "genome.bam", &pattern(24 * MIB, 1)).await;
    let first = world.put_event(&replicator, "genome.bam").await.unwrap();
    assert_eq!(first["handed_off"], 1, "{first}");

    // Overwritten with other bytes in another layout before the next hop.
    let newer = pattern(18 * MIB + 7, 9);
    put_large(&world, "genome.bam", &newer).await;
    let summaries = run_chain(&replicator, resumes(&first)).await;
    let last = summaries.last().unwrap();
    assert_eq!(last["copied"], 1, "{summaries:?}");
    assert_replica_equal(&world, "genome.bam", &newer).await;
    assert_eq!(
        world.open_uploads().await,
        0,
        "the first chain's upload was aborted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_chains_for_one_key_the_later_goes_on_and_the_earlier_gives_way() {
    let world = World::new("chainone", WorldOptions::default()).await;
    let replicator = chained(&world, "2").await;
    // Six parts, two per invocation: no chain completes before its third hop.
    let body = pattern(30 * MIB, 4);
    put_large(&world, "backup.tar", &body).await;
    // The same event delivered twice starts two chains.
    let mut continuations = Vec::new();
    for _ in 0..2 {
        let summary = world.put_event(&replicator, "backup.tar").await.unwrap();
        assert_eq!(summary["handed_off"], 1, "{summary}");
        continuations.extend(resumes(&summary));
    }
    assert_eq!(world.open_uploads().await, 2);

    // Each chain's second hop: the earlier upload gives way, whichever hop runs first.
    let mut next = Vec::new();
    let mut gave_way = 0;
    for continuation in &continuations {
        let summary = handle_payload(continuation, &replicator).await.unwrap();
        gave_way += summary["skipped"].as_u64().unwrap();
        next.extend(resumes(&summary));
    }
    assert_eq!(gave_way, 1, "exactly one chain gives way");
    assert_eq!(next.len(), 1, "one chain goes on");
    assert_eq!(world.open_uploads().await, 1);

    let summaries = run_chain(&replicator, next).await;
    assert_eq!(summaries.last().unwrap()["copied"], 1, "{summaries:?}");
    assert_replica_equal(&world, "backup.tar", &body).await;
    assert_eq!(world.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_hands_a_large_object_to_a_chain_of_its_own_and_goes_on() {
    let world = World::new("chainfill", WorldOptions::default()).await;
    let replicator = chained(&world, "2").await;
    let body = pattern(16 * MIB, 6);
    put_large(&world, "archive/a.tar", &body).await;
    world.put_source("archive/b.txt", b"small").await;

    let report = handle_payload(&json!({"backfill": {}}), &replicator)
        .await
        .unwrap();
    assert_eq!(
        (
            report["listed"].as_u64(),
            report["copied"].as_u64(),
            report["handed_off"].as_u64(),
            report["failed"].as_u64()
        ),
        (Some(2), Some(1), Some(1), Some(0)),
        "{report}"
    );
    assert!(
        report["resume"].is_null(),
        "the listing is done: the large object does not hold up the backfill"
    );
    let copies = report["copies_to_resume"].as_array().unwrap().clone();
    let summaries = run_chain(&replicator, copies).await;
    assert_eq!(summaries.last().unwrap()["copied"], 1, "{summaries:?}");
    assert_replica_equal(&world, "archive/a.tar", &body).await;
    assert_eq!(world.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_that_copies_no_part_stops_after_three_invocations_and_leaves_no_upload() {
    let world = World::new("chainstall", WorldOptions::default()).await;
    let replicator = chained(&world, "2").await;
    put_large(&world, "stuck.bin", &pattern(12 * MIB, 2)).await;
    // Every part copy is held, and every invocation starts with its deadline passed: no
    // invocation gets a part done.
    let hold = support::unique("stalled-parts");
    world.emulator.harness(
        "trigger",
        json!({"method": "PUT", "path_contains": format!("{}/stuck.bin", world.destination_bucket),
               "query_contains": "partNumber=", "count": 1000, "hold": hold}),
    );
    let passed = || InvocationContext {
        deadline: Some(SystemTime::now()),
        ..Default::default()
    };
    let mut payload = world.s3_event_now("s3-put.json", "stuck.bin").await;
    for stalled in 1..=2 {
        let summary = handle_with_context(&payload, &replicator, passed())
            .await
            .unwrap();
        assert_eq!(summary["handed_off"], 1, "{summary}");
        payload = resumes(&summary).remove(0);
        assert_eq!(payload["continue"]["stalled"], stalled, "{payload}");
    }
    let third = handle_with_context(&payload, &replicator, passed()).await;
    world.emulator.harness("release", json!({"name": hold}));
    let error = third.expect_err("the third invocation without progress fails");
    assert!(
        error
            .to_string()
            .contains("3 invocations in a row copied no part"),
        "{error}"
    );
    assert_eq!(
        world.open_uploads().await,
        0,
        "the stopped chain's upload is aborted"
    );
}
