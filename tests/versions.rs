//! B follows A through deletes, undeletes, lifecycle expirations and tag changes, on the local
//! S3 emulator: every event about a key converges B on A's current state of it, and a delete
//! never removes a newer object. Races are forced with the emulator holding one request until
//! the test releases it, never by timing.

mod support;

use s3_replicator::{Replicator, handle_payload};
use serde_json::{Value, json};
use support::{
    World, WorldOptions, batch_job, enable_versioning, eventbridge_event, failed_message_ids,
    fixture, put_in_parts, result_codes, s3_event, sqs_batch,
};

const MIB: usize = 1024 * 1024;

async fn world(name: &str) -> (World, Replicator) {
    let world = World::new(
        name,
        WorldOptions {
            replicate_deletes: true,
            ..Default::default()
        },
    )
    .await;
    let replicator = world
        .replicator_with(
            "us-east-1",
            &[("MULTIPART_THRESHOLD", "5MiB"), ("PART_CONCURRENCY", "2")],
        )
        .await;
    (world, replicator)
}

/// A notification as it arrives directly, in SQS, through SNS, and through SNS into SQS.
fn notification_shapes(notification: &Value) -> Vec<(&'static str, Value)> {
    let mut sns = fixture("sns-s3.json");
    sns["Records"][0]["Sns"]["Message"] = json!(notification.to_string());
    let mut sns_in_sqs = fixture("sqs-sns-s3.json");
    let mut envelope: Value =
        serde_json::from_str(sns_in_sqs["Records"][0]["body"].as_str().unwrap()).unwrap();
    envelope["Message"] = json!(notification.to_string());
    sns_in_sqs["Records"][0]["body"] = json!(envelope.to_string());
    vec![
        ("direct", notification.clone()),
        ("sqs", sqs_batch(std::slice::from_ref(notification))),
        ("sns", sns),
        ("sns-sqs", sns_in_sqs),
    ]
}

/// Handles `payload` and checks that nothing failed, whatever its shape.
async fn handled(payload: &Value, replicator: &Replicator) -> Value {
    let response = handle_payload(payload, replicator).await.unwrap();
    if response.get("batchItemFailures").is_some() {
        assert!(failed_message_ids(&response).is_empty(), "{response}");
    } else {
        assert_eq!(response["failed"], 0, "{response}");
    }
    response
}

/// A call of the emulator's control API that may block (a wait for a held request), made off
/// the runtime's threads so that the request it waits for keeps going.
async fn harness(world: &World, route: &'static str, body: Value) -> Value {
    let emulator = world.emulator;
    tokio::task::spawn_blocking(move || emulator.harness(route, body))
        .await
        .unwrap()
}

async fn replica_tags(world: &World, key: &str) -> Vec<String> {
    let tags = world
        .admin_b
        .get_object_tagging()
        .bucket(&world.destination_bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<String> = tags
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect();
    tags.sort();
    tags
}

async fn tag_source(world: &World, key: &str, tagging: &[(&str, &str)]) {
    use aws_sdk_s3::types::{Tag, Tagging};
    let tags = tagging
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
        .collect();
    world
        .admin_a
        .put_object_tagging()
        .bucket(&world.source_bucket)
        .key(key)
        .tagging(Tagging::builder().set_tag_set(Some(tags)).build().unwrap())
        .send()
        .await
        .unwrap();
}

async fn delete_source(world: &World, key: &str) {
    world
        .admin_a
        .delete_object()
        .bucket(&world.source_bucket)
        .key(key)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn each_lifecycle_expiration_through_each_shape_removes_the_replica() {
    let (world, replicator) = world("lifecycle").await;
    let types = [
        ("delete", "s3-lifecycle-expiration-delete.json"),
        (
            "marker",
            "s3-lifecycle-expiration-delete-marker-created.json",
        ),
    ];
    for (kind, fixture_name) in types {
        let probe = s3_event(fixture_name, &world.source_bucket, "probe");
        for (shape, _) in notification_shapes(&probe) {
            let key = format!("lc/{shape}-{kind}.txt");
            world.put_source(&key, b"expires").await;
            world.put_event(&replicator, &key).await.unwrap();
            delete_source(&world, &key).await;
            let notification = s3_event(fixture_name, &world.source_bucket, &key);
            let payload = notification_shapes(&notification)
                .into_iter()
                .find(|(name, _)| *name == shape)
                .unwrap()
                .1;
            handled(&payload, &replicator).await;
        }
    }
    // EventBridge's own lifecycle deletions.
    for (kind, deletion_type) in [
        ("delete", "Permanently Deleted"),
        ("marker", "Delete Marker Created"),
    ] {
        let key = format!("lc/eventbridge-{kind}.txt");
        world.put_source(&key, b"expires").await;
        world.put_event(&replicator, &key).await.unwrap();
        delete_source(&world, &key).await;
        let mut event = eventbridge_event(
            "eventbridge-object-deleted.json",
            &world.source_bucket,
            &key,
        );
        event["detail"]["reason"] = json!("Lifecycle Expiration");
        event["detail"]["deletion-type"] = json!(deletion_type);
        let summary = handled(&event, &replicator).await;
        assert_eq!(summary["deleted"], 1, "{summary}");
    }
    assert_eq!(
        world.destination_keys().await,
        Vec::<String>::new(),
        "every expired object's replica is gone"
    );
}

#[tokio::test]
async fn an_undelete_brings_the_replica_back() {
    let (world, replicator) = world("undelete").await;
    enable_versioning(&world.admin_a, &world.source_bucket).await;
    world.put_source("back.txt", b"still here").await;
    world.put_event(&replicator, "back.txt").await.unwrap();
    delete_source(&world, "back.txt").await;
    let removal = s3_event(
        "s3-delete-marker-created.json",
        &world.source_bucket,
        "back.txt",
    );
    let summary = handled(&removal, &replicator).await;
    assert_eq!(summary["deleted"], 1, "{summary}");

    // Removing the delete marker makes the object current again; its event is a removal.
    let versions = world
        .admin_a
        .list_object_versions()
        .bucket(&world.source_bucket)
        .prefix("back.txt")
        .send()
        .await
        .unwrap();
    let marker = versions.delete_markers()[0]
        .version_id()
        .unwrap()
        .to_string();
    world
        .admin_a
        .delete_object()
        .bucket(&world.source_bucket)
        .key("back.txt")
        .version_id(marker)
        .send()
        .await
        .unwrap();
    let undelete = s3_event("s3-delete.json", &world.source_bucket, "back.txt");
    let summary = handled(&undelete, &replicator).await;
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(world.destination_body("back.txt").await, b"still here");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_never_removes_a_newer_object() {
    let (world, replicator) = world("deleterace").await;
    world.put_source("race.txt", b"old").await;
    world.put_event(&replicator, "race.txt").await.unwrap();
    delete_source(&world, "race.txt").await;

    // The removal's DeleteObject on B is held by the emulator after the function read A (gone)...
    world.emulator.harness(
        "trigger",
        json!({"method": "DELETE", "path_contains": format!("{}/race.txt", world.destination_bucket),
               "hold": "race-delete"}),
    );
    let removal = s3_event("s3-delete.json", &world.source_bucket, "race.txt");
    let racing = async {
        harness(&world, "wait-held", json!({"name": "race-delete"})).await;
        // ...while the key is written again and its event copies it to B.
        world.put_source("race.txt", b"new").await;
        let summary = world.put_event(&replicator, "race.txt").await.unwrap();
        assert_eq!(summary["copied"], 1, "{summary}");
        harness(&world, "release", json!({"name": "race-delete"})).await;
    };
    let (summary, ()) = tokio::join!(handle_payload(&removal, &replicator), racing);

    // The delete lands on the new replica; the function finds A's object again and copies it.
    let summary = summary.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(world.destination_body("race.txt").await, b"new");
}

#[tokio::test]
async fn tag_changes_reach_the_replica_without_a_copy() {
    let (world, replicator) = world("tags").await;
    world.put_source("tagged.txt", b"tagged").await;
    world.put_event(&replicator, "tagged.txt").await.unwrap();

    tag_source(&world, "tagged.txt", &[("team", "data"), ("tier", "gold")]).await;
    let put = s3_event("s3-tagging-put.json", &world.source_bucket, "tagged.txt");
    let (summary, requests) = world
        .operations_during(handle_payload(&put, &replicator))
        .await;
    assert_eq!(summary.unwrap()["tagged"], 1);
    assert_eq!(requests.get("CopyObject"), None, "{requests:?}");
    assert_eq!(
        replica_tags(&world, "tagged.txt").await,
        ["team=data", "tier=gold"]
    );

    // Every tag removed: through EventBridge this time.
    world
        .admin_a
        .delete_object_tagging()
        .bucket(&world.source_bucket)
        .key("tagged.txt")
        .send()
        .await
        .unwrap();
    let deleted = eventbridge_event(
        "eventbridge-object-tags-deleted.json",
        &world.source_bucket,
        "tagged.txt",
    );
    let summary = handled(&deleted, &replicator).await;
    assert_eq!(summary["tagged"], 1, "{summary}");
    assert!(replica_tags(&world, "tagged.txt").await.is_empty());

    // No replica yet (its copy still to come, or its event lost): the tag event copies it.
    world.put_source("early.txt", b"early").await;
    tag_source(&world, "early.txt", &[("stage", "raw")]).await;
    let put = s3_event("s3-tagging-put.json", &world.source_bucket, "early.txt");
    let summary = handled(&put, &replicator).await;
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(replica_tags(&world, "early.txt").await, ["stage=raw"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_change_during_a_copy_in_parts_is_not_lost() {
    let (world, replicator) = world("tagrace").await;
    put_in_parts(
        &world.admin_a,
        &world.source_bucket,
        "big.bin",
        &vec![7u8; 11 * MIB],
        5 * MIB,
        |create| create.tagging("stage=raw"),
    )
    .await;
    // The copy's CompleteMultipartUpload is held: the copy read the tags at its start.
    world.emulator.harness(
        "trigger",
        json!({"method": "POST", "path_contains": format!("{}/big.bin", world.destination_bucket),
               "query_contains": "uploadId=", "hold": "tag-race"}),
    );
    let event = world.s3_event_now("s3-put.json", "big.bin").await;
    let racing = async {
        harness(&world, "wait-held", json!({"name": "tag-race"})).await;
        // The tags change, and their event is handled while the copy is still running.
        tag_source(&world, "big.bin", &[("stage", "curated")]).await;
        let put = s3_event("s3-tagging-put.json", &world.source_bucket, "big.bin");
        handled(&put, &replicator).await;
        harness(&world, "release", json!({"name": "tag-race"})).await;
    };
    let (summary, ()) = tokio::join!(handle_payload(&event, &replicator), racing);
    let summary = summary.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(replica_tags(&world, "big.bin").await, ["stage=curated"]);
    assert_eq!(world.open_uploads().await, 0);
}

#[tokio::test]
async fn a_batch_task_for_a_key_missing_in_a_removes_its_replica_when_deletes_are_replicated() {
    let (world, replicator) = world("batchgone").await;
    world.put_source("gone.txt", b"gone").await;
    world.put_event(&replicator, "gone.txt").await.unwrap();
    delete_source(&world, "gone.txt").await;
    world.put_source("here.txt", b"here").await;
    let bucket = world.source_bucket.as_str();
    let job = batch_job(
        "batch-operations-v2.json",
        &[(bucket, "gone.txt"), (bucket, "here.txt")],
    );
    let response = handle_payload(&job, &replicator).await.unwrap();
    let codes = result_codes(&response);
    assert_eq!(codes[0].0, "Succeeded", "{codes:?}");
    assert!(codes[0].1.contains("deleted"), "{codes:?}");
    assert_eq!(codes[1].0, "Succeeded", "{codes:?}");
    assert_eq!(world.destination_keys().await, vec!["here.txt"]);
}
