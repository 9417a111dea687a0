//! Least privilege: the role's identity policy from template.yaml and the bucket policy the
//! project hands to B grant nothing that nothing needs. Every action of both is removed in turn,
//! and each removal breaks the features that need it, with an error that says what is missing.
//!
//! The features are exercised on the emulator (which evaluates both policies): an event copy
//! with metadata, tags and ACL; an event for an object already deleted; a multipart copy; the
//! cleanup of a failed multipart copy; a replicated delete; a backfill; a backfill continuing
//! itself through an asynchronous invocation; the permission doctor; the clean-up of uploads the
//! function left open in B.

mod support;

use std::time::SystemTime;

use futures::StreamExt;
use s3_replicator::Replicator;
use s3_replicator::backfill::{BackfillRequest, run_backfill};
use s3_replicator::handle_payload;
use s3_replicator::invoke::SelfInvoker;
use s3_replicator::ops::doctor::{Status, run_doctor};
use serde_json::{Value, json};
use support::{FUNCTION_ARN, World, WorldOptions, versioned_run};

const MIB: usize = 1024 * 1024;

/// Statements whose actions the Lambda service uses with the role, not the function's code:
/// the SQS event source mapping polls the notification queue, and Lambda sends failed
/// asynchronous invocations to the dead-letter queue. The emulator does not run those services;
/// what the test checks of them is that each is bound to the resource that needs it.
const SERVICE_STATEMENTS: &[(&str, &[&str], &str)] = &[
    (
        "ConsumeQueue",
        &[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
        ],
        "NotificationQueue",
    ),
    (
        "SendFailedInvocationsToDeadLetterQueue",
        &["sqs:SendMessage"],
        "DeadLetterQueue",
    ),
    (
        "WriteLogs",
        &["logs:CreateLogStream", "logs:PutLogEvents"],
        "ReplicatorLogGroup",
    ),
];

const FEATURES: [&str; 12] = [
    "event copy",
    "deleted source",
    "multipart copy",
    "multipart cleanup",
    "chained copy",
    "replicated delete",
    "backfill",
    "backfill continues",
    "doctor",
    "versioned multipart copy",
    "tag change",
    "stale uploads",
];

/// Which features break without each action (`Sid/action` of the identity policy, or
/// `bucket/action` of B's bucket policy). A multipart copy that cannot start cannot be cleaned
/// up either; a copy that copies tags needs `s3:GetObjectTagging` on the source, and writing
/// tags (a multipart upload's `x-amz-tagging`) needs `s3:PutObjectTagging` on the replica.
/// A backfill's lock is a marker in B written like a replica (`s3:PutObject` with the ACL), and
/// each hop of a continuing backfill hands it on.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "ReadSourceObjects/s3:GetObject",
        &[
            "event copy",
            "deleted source",
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "replicated delete",
            "backfill",
            "doctor",
            "versioned multipart copy",
        ],
    ),
    (
        "ReadSourceObjects/s3:GetObjectTagging",
        &[
            "event copy",
            "deleted source",
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "backfill",
            "doctor",
            "tag change",
        ],
    ),
    (
        "ReadSourceObjects/s3:GetObjectVersion",
        &["versioned multipart copy"],
    ),
    (
        "ReadSourceObjects/s3:GetObjectVersionTagging",
        &["versioned multipart copy"],
    ),
    (
        "ListSourceBucket/s3:ListBucket",
        &[
            "deleted source",
            "replicated delete",
            "backfill",
            "backfill continues",
            "doctor",
        ],
    ),
    (
        "ListSourceBucket/s3:GetEncryptionConfiguration",
        &["doctor"],
    ),
    ("ListSourceBucket/s3:GetBucketVersioning", &["doctor"]),
    (
        "WriteReplicas/s3:PutObject",
        &[
            "event copy",
            "deleted source",
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "backfill",
            "backfill continues",
            "doctor",
            "versioned multipart copy",
            "stale uploads",
        ],
    ),
    (
        "WriteReplicas/s3:PutObjectTagging",
        &[
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "doctor",
            "versioned multipart copy",
            "tag change",
        ],
    ),
    (
        "WriteReplicas/s3:AbortMultipartUpload",
        &["multipart cleanup", "doctor", "stale uploads"],
    ),
    (
        "WriteReplicas/s3:ListMultipartUploadParts",
        &["chained copy", "doctor"],
    ),
    (
        "WriteReplicas/s3:GetObject",
        &[
            "multipart copy",
            "chained copy",
            "doctor",
            "versioned multipart copy",
        ],
    ),
    (
        "WriteReplicas/s3:DeleteObjectTagging",
        &["doctor", "tag change"],
    ),
    (
        "WriteReplicas/s3:PutObjectAcl",
        &[
            "event copy",
            "deleted source",
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "backfill",
            "backfill continues",
            "doctor",
            "versioned multipart copy",
        ],
    ),
    (
        "WriteReplicas/s3:DeleteObject",
        &["replicated delete", "doctor"],
    ),
    (
        "ListDestinationBucket/s3:ListBucket",
        &["backfill", "backfill continues", "doctor"],
    ),
    (
        "ListDestinationBucket/s3:GetEncryptionConfiguration",
        &["doctor"],
    ),
    ("ListDestinationBucket/s3:GetBucketVersioning", &["doctor"]),
    (
        "ListDestinationBucket/s3:ListBucketMultipartUploads",
        &["doctor", "stale uploads"],
    ),
    (
        "ListDestinationBucket/s3:GetLifecycleConfiguration",
        &["doctor"],
    ),
    (
        "InvokeSelfForBackfill/lambda:InvokeFunction",
        &["backfill continues", "doctor"],
    ),
    (
        "bucket/s3:PutObject",
        &[
            "event copy",
            "deleted source",
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "backfill",
            "backfill continues",
            "doctor",
            "versioned multipart copy",
            "stale uploads",
        ],
    ),
    (
        "bucket/s3:PutObjectTagging",
        &[
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "doctor",
            "versioned multipart copy",
            "tag change",
        ],
    ),
    (
        "bucket/s3:AbortMultipartUpload",
        &["multipart cleanup", "doctor", "stale uploads"],
    ),
    (
        "bucket/s3:ListMultipartUploadParts",
        &["chained copy", "doctor"],
    ),
    (
        "bucket/s3:GetObject",
        &[
            "multipart copy",
            "chained copy",
            "doctor",
            "versioned multipart copy",
        ],
    ),
    ("bucket/s3:DeleteObjectTagging", &["doctor", "tag change"]),
    (
        "bucket/s3:PutObjectAcl",
        &[
            "event copy",
            "deleted source",
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "backfill",
            "backfill continues",
            "doctor",
            "versioned multipart copy",
        ],
    ),
    ("bucket/s3:DeleteObject", &["replicated delete", "doctor"]),
    (
        "bucket/s3:ListBucket",
        &["backfill", "backfill continues", "doctor"],
    ),
    ("bucket/s3:GetEncryptionConfiguration", &["doctor"]),
    ("bucket/s3:GetBucketVersioning", &["doctor"]),
    (
        "bucket/s3:ListBucketMultipartUploads",
        &["doctor", "stale uploads"],
    ),
    ("bucket/s3:GetLifecycleConfiguration", &["doctor"]),
];

/// Removals checked at once, each on a world of its own.
const REMOVALS_AT_ONCE: usize = 4;

/// How the table changes when both buckets are versioned (the test command's versioned run):
/// copies in parts read one version, so they need the version actions instead of
/// `s3:GetObjectTagging`, and the doctor reads a version too; the doctor's delete probe stands
/// down on a versioned B (it would leave a delete marker), so it no longer needs `s3:DeleteObject`.
const VERSIONED_CHANGES: &[(&str, &[&str], &[&str])] = &[
    (
        "ReadSourceObjects/s3:GetObjectTagging",
        &["multipart copy", "multipart cleanup", "chained copy"],
        &[],
    ),
    (
        "ReadSourceObjects/s3:GetObjectVersion",
        &[],
        &[
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "doctor",
        ],
    ),
    (
        "ReadSourceObjects/s3:GetObjectVersionTagging",
        &[],
        &[
            "multipart copy",
            "multipart cleanup",
            "chained copy",
            "doctor",
        ],
    ),
    ("WriteReplicas/s3:DeleteObject", &["doctor"], &[]),
    ("bucket/s3:DeleteObject", &["doctor"], &[]),
];

/// The features expected to break without `action`, in the order of [`FEATURES`].
fn expected_features(action: &str, features: &[&'static str]) -> Vec<&'static str> {
    let mut expected = features.to_vec();
    if versioned_run()
        && let Some((_, removed, added)) = VERSIONED_CHANGES.iter().find(|(a, ..)| *a == action)
    {
        expected.retain(|f| !removed.contains(f));
        expected.extend(added.iter().copied());
    }
    expected.sort_by_key(|f| FEATURES.iter().position(|known| known == f));
    expected.dedup();
    expected
}

fn options(drop: Option<&str>) -> WorldOptions {
    let mut options = WorldOptions {
        replicate_deletes: true,
        destination_acl: Some("bucket-owner-full-control"),
        ..Default::default()
    };
    match drop.map(|d| d.split_once('/').unwrap()) {
        None => {}
        Some(("bucket", action)) => options.drop_bucket_actions = vec![action.to_string()],
        Some(_) => options.drop_actions = vec![drop.unwrap().to_string()],
    }
    options
}

/// A statement's actions (IAM allows one string or an array).
fn actions(statement: &Value) -> Vec<&str> {
    match &statement["Action"] {
        Value::String(action) => vec![action.as_str()],
        Value::Array(actions) => actions.iter().map(|a| a.as_str().unwrap()).collect(),
        other => panic!("Action {other} in {statement}"),
    }
}

/// Every `Sid/action` of the role's identity policies, and every `bucket/action` of B's policy.
fn granted_actions(world: &World) -> (Vec<String>, Vec<(String, Value)>) {
    let mut exercised = Vec::new();
    let mut service = Vec::new();
    for document in world.role_policies.as_object().unwrap().values() {
        for statement in document["Statement"].as_array().unwrap() {
            let sid = statement["Sid"].as_str().unwrap().to_string();
            if SERVICE_STATEMENTS.iter().any(|(name, _, _)| *name == sid) {
                service.push((sid, statement.clone()));
                continue;
            }
            exercised.extend(
                actions(statement)
                    .into_iter()
                    .map(|action| format!("{sid}/{action}")),
            );
        }
    }
    for statement in world.grant().bucket_policy()["Statement"]
        .as_array()
        .unwrap()
    {
        exercised.extend(
            actions(statement)
                .into_iter()
                .map(|action| format!("bucket/{action}")),
        );
    }
    (exercised, service)
}

async fn put(world: &World, key: &str, body: Vec<u8>) {
    world
        .admin_a
        .put_object()
        .bucket(&world.source_bucket)
        .key(key)
        .metadata("origin", "least-privilege")
        .tagging("team=data")
        .body(body.into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// As [`put`], in parts of 5 MiB, so that the copy is made in parts.
async fn put_in_parts(world: &World, key: &str, body: Vec<u8>) {
    support::put_in_parts(
        &world.admin_a,
        &world.source_bucket,
        key,
        &body,
        5 * MIB,
        |create| {
            create
                .metadata("origin", "least-privilege")
                .tagging("team=data")
        },
    )
    .await;
}

async fn replica_tags(world: &World, key: &str) -> Result<(), String> {
    let tags = world
        .admin_b
        .get_object_tagging()
        .bucket(&world.destination_bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    match tags.tag_set() {
        [tag] if tag.key() == "team" && tag.value() == "data" => Ok(()),
        other => Err(format!("replica of {key} has tags {other:?}")),
    }
}

async fn event(
    world: &World,
    replicator: &Replicator,
    fixture: &str,
    key: &str,
) -> Result<Value, String> {
    let event = world.s3_event_now(fixture, key).await;
    handle_payload(&event, replicator)
        .await
        .map_err(|e| e.to_string())
}

async fn event_copy(world: &World, replicator: &Replicator) -> Result<(), String> {
    put(world, "copy.txt", b"copy me".to_vec()).await;
    let summary = event(world, replicator, "s3-put.json", "copy.txt").await?;
    if summary["copied"] != 1 {
        return Err(format!("not copied: {summary}"));
    }
    replica_tags(world, "copy.txt").await
}

async fn deleted_source(world: &World, replicator: &Replicator) -> Result<(), String> {
    let summary = event(world, replicator, "s3-put.json", "deleted-before.txt").await?;
    if summary["skipped"] != 1 {
        return Err(format!("not skipped: {summary}"));
    }
    Ok(())
}

async fn multipart_copy(world: &World, replicator: &Replicator) -> Result<(), String> {
    put_in_parts(world, "large.bin", vec![b'l'; 12 * MIB]).await;
    let summary = event(world, replicator, "s3-put.json", "large.bin").await?;
    if summary["copied"] != 1 {
        return Err(format!("not copied: {summary}"));
    }
    replica_tags(world, "large.bin").await
}

/// A multipart copy whose first part fails (an error injected by the emulator): the upload must
/// be aborted, leaving nothing in B.
async fn multipart_cleanup(world: &World, replicator: &Replicator) -> Result<(), String> {
    put_in_parts(world, "interrupted.bin", vec![b'i'; 12 * MIB]).await;
    world.emulator.harness(
        "fault",
        json!({
            "path_contains": format!("{}/interrupted.bin", world.destination_bucket),
            "method": "PUT",
            "status": 400,
            "code": "InvalidRequest",
            "count": 1,
        }),
    );
    match event(world, replicator, "s3-put.json", "interrupted.bin").await {
        Ok(summary) => return Err(format!("the injected fault was not met: {summary}")),
        Err(error) if !error.contains("InvalidRequest") => return Err(error),
        Err(_) => {}
    }
    let uploads = world.open_uploads().await;
    if uploads > 0 {
        return Err(format!(
            "the failed multipart copy left {uploads} upload(s) in B (see the log line \
             \"could not abort the multipart upload\")"
        ));
    }
    Ok(())
}

/// A copy in parts handed from one invocation to the next (two parts each), which finds the
/// parts already copied with `ListParts`.
async fn chained_copy(world: &World) -> Result<(), String> {
    let replicator = world
        .replicator_with(
            "us-east-1",
            &[
                ("MULTIPART_THRESHOLD", "5MiB"),
                ("PART_CONCURRENCY", "2"),
                ("PARTS_PER_INVOCATION", "2"),
            ],
        )
        .await;
    put_in_parts(world, "chained.bin", vec![b'c'; 12 * MIB]).await;
    let first = event(world, &replicator, "s3-put.json", "chained.bin").await?;
    let Some(resume) = first["resume"].get(0) else {
        return Err(format!("not handed off: {first}"));
    };
    let last = handle_payload(resume, &replicator)
        .await
        .map_err(|e| e.to_string())?;
    if last["copied"] != 1 {
        return Err(format!("not copied: {last}"));
    }
    replica_tags(world, "chained.bin").await
}

async fn replicated_delete(world: &World, replicator: &Replicator) -> Result<(), String> {
    world
        .admin_b
        .put_object()
        .bucket(&world.destination_bucket)
        .key("removed.txt")
        .body(b"old replica".to_vec().into())
        .send()
        .await
        .unwrap();
    let summary = event(world, replicator, "s3-delete.json", "removed.txt").await?;
    if summary["deleted"] != 1 {
        return Err(format!("not deleted: {summary}"));
    }
    Ok(())
}

async fn backfill(world: &World, replicator: &Replicator) -> Result<(), String> {
    for i in 0..3 {
        put(world, &format!("backfill/{i}.txt"), vec![b'b'; 10 + i]).await;
    }
    let request = BackfillRequest {
        prefix: "backfill/".into(),
        ..Default::default()
    };
    let report = run_backfill(&request, replicator, None, SelfInvoker::default())
        .await
        .map_err(|e| e.to_string())?;
    if (report.copied, report.failed) != (3, 0) {
        return Err(format!("{report:?}"));
    }
    replica_tags(world, "backfill/0.txt").await
}

async fn backfill_continues(world: &World, replicator: &Replicator) -> Result<(), String> {
    for i in 0..2 {
        put(world, &format!("continue/{i}.txt"), vec![b'c'; 5]).await;
    }
    let lambda = world.lambda_client().await;
    let request = BackfillRequest {
        prefix: "continue/".into(),
        continue_backfill: true,
        ..Default::default()
    };
    let invoker = SelfInvoker {
        client: Some(&lambda),
        function_arn: Some(FUNCTION_ARN),
        request_id: None,
    };
    // No time left: one copy, then the rest is handed to the next invocation.
    let report = run_backfill(&request, replicator, Some(SystemTime::now()), invoker)
        .await
        .map_err(|e| e.to_string())?;
    if !report.continued {
        return Err(format!("did not continue: {report:?}"));
    }
    Ok(())
}

/// A copy in parts from a versioned source, which reads one version throughout. It runs last:
/// it turns versioning on for the rest of the world's life.
async fn versioned_multipart_copy(world: &World, replicator: &Replicator) -> Result<(), String> {
    support::enable_versioning(&world.admin_a, &world.source_bucket).await;
    put_in_parts(world, "versioned.bin", vec![b'v'; 12 * MIB]).await;
    let summary = event(world, replicator, "s3-put.json", "versioned.bin").await?;
    if summary["copied"] != 1 {
        return Err(format!("not copied: {summary}"));
    }
    replica_tags(world, "versioned.bin").await
}

/// Tag changes in A reach the replica without a copy: tags put, then every tag removed. The
/// replica is B's own here, so that only the tagging grants are exercised.
async fn tag_change(world: &World, replicator: &Replicator) -> Result<(), String> {
    put(world, "tagged.txt", b"tagged".to_vec()).await;
    world
        .admin_b
        .put_object()
        .bucket(&world.destination_bucket)
        .key("tagged.txt")
        .body(b"tagged".to_vec().into())
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let summary = event(world, replicator, "s3-tagging-put.json", "tagged.txt").await?;
    if summary["tagged"] != 1 {
        return Err(format!("tags not put: {summary}"));
    }
    replica_tags(world, "tagged.txt").await?;
    world
        .admin_a
        .delete_object_tagging()
        .bucket(&world.source_bucket)
        .key("tagged.txt")
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let summary = event(world, replicator, "s3-tagging-delete.json", "tagged.txt").await?;
    if summary["tagged"] != 1 {
        return Err(format!("tags not removed: {summary}"));
    }
    Ok(())
}

/// An upload the function started and left open (its copy stopped in the middle) is found and
/// aborted by the `uploads` invocation.
async fn stale_uploads(world: &World, replicator: &Replicator) -> Result<(), String> {
    replicator
        .clients()
        .destination()
        .create_multipart_upload()
        .bucket(&world.destination_bucket)
        .key("left-open.bin")
        .send()
        .await
        .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    let request = json!({"uploads": {"older_than_hours": 0, "abort": true}});
    let report = handle_payload(&request, replicator)
        .await
        .map_err(|e| e.to_string())?;
    if report["aborted"] != 1 || world.open_uploads().await != 0 {
        return Err(format!("the upload left open was not aborted: {report}"));
    }
    Ok(())
}

async fn doctor(world: &World, replicator: &Replicator) -> Result<(), String> {
    let lambda = world.lambda_client().await;
    let invoker = SelfInvoker {
        client: Some(&lambda),
        function_arn: Some(FUNCTION_ARN),
        request_id: None,
    };
    let report = run_doctor(replicator, invoker).await;
    let failing: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| format!("{}: {}", c.name, c.detail.as_deref().unwrap_or_default()))
        .collect();
    if failing.is_empty() {
        Ok(())
    } else {
        Err(failing.join("; "))
    }
}

/// Runs every feature on a world of its own; the broken ones with their errors.
async fn broken_features(drop: Option<&str>) -> Vec<(&'static str, String)> {
    let world = World::new("leastpriv", options(drop)).await;
    let replicator = world
        .replicator_with(
            "us-east-1",
            &[("MULTIPART_THRESHOLD", "5MiB"), ("PART_CONCURRENCY", "2")],
        )
        .await;
    let results = [
        event_copy(&world, &replicator).await,
        deleted_source(&world, &replicator).await,
        multipart_copy(&world, &replicator).await,
        multipart_cleanup(&world, &replicator).await,
        chained_copy(&world).await,
        replicated_delete(&world, &replicator).await,
        backfill(&world, &replicator).await,
        backfill_continues(&world, &replicator).await,
        doctor(&world, &replicator).await,
        versioned_multipart_copy(&world, &replicator).await,
        tag_change(&world, &replicator).await,
        stale_uploads(&world, &replicator).await,
    ];
    FEATURES
        .into_iter()
        .zip(results)
        .filter_map(|(feature, result)| result.err().map(|error| (feature, error)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_granted_action_is_needed_by_a_feature() {
    // With everything granted, every feature works.
    let broken = broken_features(None).await;
    assert!(broken.is_empty(), "with every grant: {broken:#?}");

    let world = World::new("leastprivlist", options(None)).await;
    let (exercised, service) = granted_actions(&world);
    let expected: Vec<&str> = EXPECTED.iter().map(|(action, _)| *action).collect();
    assert_eq!(
        exercised, expected,
        "the actions granted are the ones this test removes"
    );

    // Each action is expected to be needed by some feature.
    for (action, features) in EXPECTED {
        assert!(!features.is_empty(), "{action} is granted for nothing");
    }
    let mut matrix = Vec::new();
    let mut mismatches = Vec::new();
    // Each removal gets a world of its own, so a few run at once.
    let runs: Vec<_> = EXPECTED
        .iter()
        .map(|(action, features)| async move {
            (*action, *features, broken_features(Some(action)).await)
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(runs)
        .buffered(REMOVALS_AT_ONCE)
        .collect()
        .await;
    for (action, features, broken) in results {
        let names: Vec<&str> = broken.iter().map(|(feature, _)| *feature).collect();
        let features = expected_features(action, features);
        if names != features {
            mismatches.push(format!("without {action}: {broken:#?}"));
        }
        // The error says what is missing: one of the broken features' errors names the action.
        let name = action.split_once('/').unwrap().1;
        if !broken.iter().any(|(_, error)| error.contains(name)) {
            mismatches.push(format!(
                "without {action}, no error names {name}: {broken:#?}"
            ));
        }
        matrix.push(format!("{action:45} breaks {}", names.join(", ")));
    }
    println!("{}", matrix.join("\n"));
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // The statements the Lambda service uses are bound to their queues, with exactly the
    // actions it needs.
    assert_eq!(service.len(), SERVICE_STATEMENTS.len(), "{service:?}");
    for (sid, statement) in service {
        let (_, needed, resource) = SERVICE_STATEMENTS
            .iter()
            .find(|(name, _, _)| *name == sid)
            .unwrap();
        assert_eq!(actions(&statement), *needed, "{sid}");
        assert!(
            statement["Resource"]
                .as_str()
                .is_some_and(|arn| arn.contains(resource)),
            "{sid} is granted on {} instead of {resource}",
            statement["Resource"]
        );
    }
}
