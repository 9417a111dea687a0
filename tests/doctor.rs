//! The permission doctor on the emulator, with grants removed one at a time; and the bucket
//! policy template.yaml outputs, which must be the one the project generates.

mod support;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
};
use s3_replicator::handle_payload;
use s3_replicator::invoke::SelfInvoker;
use s3_replicator::ops::doctor::{DoctorReport, Status, run_doctor};
use serde_json::json;
use support::{FUNCTION_ARN, World, WorldOptions, enable_versioning};

fn status(report: &DoctorReport, name: &str) -> Status {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:?}"))
        .status
}

fn failing(report: &DoctorReport) -> Vec<&'static str> {
    report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name)
        .collect()
}

/// The doctor as the function runs it: with its own ARN and a Lambda client.
async fn doctor(world: &World) -> DoctorReport {
    let lambda = world.lambda_client().await;
    let invoker = SelfInvoker {
        client: Some(&lambda),
        function_arn: Some(FUNCTION_ARN),
        request_id: None,
    };
    run_doctor(&world.replicator().await, invoker).await
}

#[tokio::test]
async fn a_complete_setup_is_healthy_and_leaves_nothing_behind() {
    let world = World::new(
        "doctorok",
        WorldOptions {
            replicate_deletes: true,
            destination_prefix: "from-a/".into(),
            ..Default::default()
        },
    )
    .await;
    world.put_source("sample.txt", b"x").await;
    let empty = doctor(&world).await;
    assert!(empty.healthy, "{}", empty.to_table());
    assert_eq!(status(&empty, "read destination head"), Status::Skip);
    // With a replica in place, reading its head is checked too.
    world
        .put_event(&world.replicator().await, "sample.txt")
        .await
        .unwrap();
    let report = doctor(&world).await;
    assert!(report.healthy, "{}", report.to_table());
    for name in [
        "list source",
        "read source object",
        "write destination",
        "abort destination upload",
        "read destination head",
        "delete destination tags",
        "read destination versioning",
        "list destination",
        "invoke self",
        "read source versioning",
        "list destination uploads",
    ] {
        assert_eq!(
            status(&report, name),
            Status::Pass,
            "{name}: {}",
            report.to_table()
        );
    }
    // On a versioned B the delete probe would leave a delete marker: it stands down.
    let delete_probe = if world.versioned {
        Status::Skip
    } else {
        Status::Pass
    };
    assert_eq!(status(&report, "delete in destination"), delete_probe);
    // B has no lifecycle rule: a warning, not a failure.
    assert_eq!(status(&report, "destination lifecycle"), Status::Warn);
    assert_eq!(world.destination_keys().await, vec!["from-a/sample.txt"]);
    assert_eq!(world.open_uploads().await, 0);

    // Outside the function (no ARN), the self-invocation check is skipped, not failed.
    let outside = run_doctor(&world.replicator().await, SelfInvoker::default()).await;
    assert!(outside.healthy, "{}", outside.to_table());
    assert_eq!(status(&outside, "invoke self"), Status::Skip);

    // The same through an invocation.
    let invoked = handle_payload(&json!({"doctor": {}}), &world.replicator().await)
        .await
        .unwrap();
    assert_eq!(invoked["healthy"], true, "{invoked}");
}

#[tokio::test]
async fn warns_until_a_lifecycle_rule_of_b_aborts_incomplete_uploads_under_the_prefix() {
    let world = World::new(
        "doctorlifecycle",
        WorldOptions {
            destination_prefix: "from-a/".into(),
            ..Default::default()
        },
    )
    .await;
    let (status, detail) = lifecycle(&world).await;
    assert_eq!(status, Status::Warn, "{detail}");
    assert!(
        detail.contains("AbortIncompleteMultipartUpload"),
        "{detail}"
    );
    assert!(detail.contains("\"Prefix\": \"from-a/\""), "{detail}");

    // A rule for another prefix, and one that only expires objects, do not cover it.
    put_rules(
        &world,
        vec![
            abort_rule("other", "logs/", 1),
            LifecycleRule::builder()
                .id("expire")
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .expiration(LifecycleExpiration::builder().days(30).build())
                .build()
                .unwrap(),
        ],
    )
    .await;
    assert_eq!(lifecycle(&world).await.0, Status::Warn);

    put_rules(&world, vec![abort_rule("abort", "from-", 3)]).await;
    let (status, detail) = lifecycle(&world).await;
    assert_eq!(status, Status::Pass, "{detail}");
    assert!(detail.contains("after 3 day(s)"), "{detail}");
}

/// The doctor's lifecycle check: its status and what it says.
async fn lifecycle(world: &World) -> (Status, String) {
    let report = run_doctor(&world.replicator().await, SelfInvoker::default()).await;
    let check = report
        .checks
        .iter()
        .find(|c| c.name == "destination lifecycle")
        .unwrap_or_else(|| panic!("no lifecycle check: {}", report.to_table()));
    (check.status, check.detail.clone().unwrap_or_default())
}

fn abort_rule(id: &str, prefix: &str, days: i32) -> LifecycleRule {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(days)
                .build(),
        )
        .build()
        .unwrap()
}

async fn put_rules(world: &World, rules: Vec<LifecycleRule>) {
    world
        .admin_b
        .put_bucket_lifecycle_configuration()
        .bucket(&world.destination_bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("B's admin sets lifecycle rules: {e:?}"));
}

#[tokio::test]
async fn on_versioned_buckets_it_checks_version_reads_and_leaves_no_delete_marker() {
    let world = World::new(
        "doctorversions",
        WorldOptions {
            replicate_deletes: true,
            ..Default::default()
        },
    )
    .await;
    enable_versioning(&world.admin_a, &world.source_bucket).await;
    enable_versioning(&world.admin_b, &world.destination_bucket).await;
    world.put_source("sample.txt", b"x").await;
    let report = doctor(&world).await;
    assert!(report.healthy, "{}", report.to_table());
    assert_eq!(status(&report, "read source versions"), Status::Pass);
    assert_eq!(status(&report, "delete in destination"), Status::Skip);
    // Nothing at all was written to B: no delete marker, no version.
    let versions = world
        .admin_b
        .list_object_versions()
        .bucket(&world.destination_bucket)
        .send()
        .await
        .unwrap();
    assert!(versions.versions().is_empty(), "{versions:?}");
    assert!(versions.delete_markers().is_empty(), "{versions:?}");

    // Without the version grants, the version check fails and names them.
    let world = World::new(
        "doctornoversions",
        WorldOptions {
            drop_actions: vec![
                "ReadSourceObjects/s3:GetObjectVersion".into(),
                "ReadSourceObjects/s3:GetObjectVersionTagging".into(),
            ],
            ..Default::default()
        },
    )
    .await;
    enable_versioning(&world.admin_a, &world.source_bucket).await;
    world.put_source("sample.txt", b"x").await;
    let report = doctor(&world).await;
    assert_eq!(failing(&report), vec!["read source versions"]);
}

#[tokio::test]
async fn without_b_s_bucket_policy_the_writes_fail_with_the_statement_to_add() {
    let world = World::new(
        "doctornopolicy",
        WorldOptions {
            without_bucket_policy: true,
            ..Default::default()
        },
    )
    .await;
    world.put_source("sample.txt", b"x").await;
    let report = doctor(&world).await;
    assert!(!report.healthy);
    assert_eq!(
        failing(&report),
        vec![
            "write destination",
            "delete destination tags",
            "read destination versioning",
            "list destination",
            "list destination uploads",
            "destination lifecycle",
            "read destination encryption"
        ]
    );
    let write = report
        .checks
        .iter()
        .find(|c| c.name == "write destination")
        .unwrap();
    assert_eq!(write.error_code.as_deref(), Some("AccessDenied"));
    assert!(write.fix_location.as_deref().unwrap().contains(&format!(
        "the bucket policy of {} (account B)",
        world.destination_bucket
    )));
    let statement = write.fix_statement.as_ref().unwrap();
    assert_eq!(statement["Principal"]["AWS"], world.role_arn);
    assert_eq!(statement, &world.grant().bucket_policy()["Statement"][0]);
    // S3 said which policy lacks the grant: the bucket policy.
    assert!(
        write
            .detail
            .as_deref()
            .unwrap()
            .contains("no resource-based policy")
    );
    let table = report.to_table();
    assert!(table.contains("FAIL  write destination"), "{table}");
    assert!(table.contains("NOT healthy"), "{table}");

    // Invoked, the doctor fails the invocation, with the report and the statements to add.
    let error = handle_payload(&json!({"doctor": {}}), &world.replicator().await)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("failing check"), "{error}");
    assert!(error.contains("FAIL  write destination"), "{error}");
    assert!(error.contains("AllowS3ReplicatorWrites"), "{error}");
}

#[tokio::test]
async fn each_identity_statement_removed_fails_the_checks_that_need_it() {
    let cases: [(&str, &[&str]); 5] = [
        (
            "ListSourceBucket",
            &[
                "list source",
                "read source encryption",
                "read source versioning",
            ],
        ),
        ("ReadSourceObjects", &["read source object"]),
        (
            "WriteReplicas",
            &["write destination", "delete destination tags"],
        ),
        (
            "ListDestinationBucket",
            &[
                "read destination versioning",
                "list destination",
                "list destination uploads",
                "destination lifecycle",
                "read destination encryption",
            ],
        ),
        ("InvokeSelfForBackfill", &["invoke self"]),
    ];
    for (sid, expected) in cases {
        let world = World::new(
            "doctorsid",
            WorldOptions {
                drop_statements: vec![sid],
                ..Default::default()
            },
        )
        .await;
        world.put_source("sample.txt", b"x").await;
        let report = doctor(&world).await;
        let mut expected = expected.to_vec();
        // On a versioned source, reading one version needs the same statement.
        if world.versioned && sid == "ReadSourceObjects" {
            expected.push("read source versions");
        }
        assert_eq!(
            failing(&report),
            expected,
            "without {sid}: {}",
            report.to_table()
        );
    }
}

#[tokio::test]
async fn the_template_outputs_the_bucket_policy_the_project_generates() {
    for (prefix, acl, deletes) in [
        ("", "bucket-owner-full-control", "false"),
        ("from-a/", "none", "true"),
    ] {
        let world = World::new(
            "templateoutput",
            WorldOptions {
                destination_prefix: prefix.into(),
                destination_acl: Some(acl),
                replicate_deletes: deletes == "true",
                ..Default::default()
            },
        )
        .await;
        let outputs = world.emulator.harness(
            "template-outputs",
            json!({
                "role_arn": world.role_arn,
                "parameters": {
                    "SourceBucket": world.source_bucket,
                    "DestinationBucket": world.destination_bucket,
                    "DestinationPrefix": prefix,
                    "DestinationAcl": acl,
                    "ReplicateDeletes": deletes,
                }
            }),
        );
        let from_template: serde_json::Value =
            serde_json::from_str(outputs["DestinationBucketPolicy"].as_str().unwrap()).unwrap();
        assert_eq!(
            from_template,
            world.grant().bucket_policy(),
            "prefix {prefix:?}, acl {acl}"
        );
    }
}

#[tokio::test]
async fn the_template_subscribes_to_every_event_type_the_function_acts_on() {
    let world = World::new("templateevents", WorldOptions::default()).await;
    let outputs = world.emulator.harness(
        "template-outputs",
        json!({
            "role_arn": world.role_arn,
            "parameters": {
                "SourceBucket": world.source_bucket,
                "DestinationBucket": world.destination_bucket,
            }
        }),
    );
    let events: Vec<String> =
        serde_json::from_str(outputs["NotificationEvents"].as_str().unwrap()).unwrap();
    assert_eq!(events, s3_replicator::decode::NOTIFICATION_EVENTS);
    // The EventBridge rule matches the same changes.
    let template = std::fs::read_to_string(support::repo_root().join("template.yaml")).unwrap();
    let detail_types = template
        .lines()
        .find_map(|line| line.trim().strip_prefix("detail-type: "))
        .unwrap();
    let detail_types: Vec<&str> = detail_types
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .collect();
    assert_eq!(
        detail_types,
        s3_replicator::decode::EVENTBRIDGE_DETAIL_TYPES
    );
    // Each one decodes to something the function acts on.
    for name in s3_replicator::decode::NOTIFICATION_EVENTS {
        let name = name.trim_start_matches("s3:").replace('*', "Put");
        let kind = s3_replicator::decode::ObjectEventKind::of_notification(&name);
        assert_ne!(
            kind,
            s3_replicator::decode::ObjectEventKind::Other,
            "{name}"
        );
    }
    for detail_type in s3_replicator::decode::EVENTBRIDGE_DETAIL_TYPES {
        let kind = s3_replicator::decode::ObjectEventKind::of_eventbridge(detail_type);
        assert_ne!(
            kind,
            s3_replicator::decode::ObjectEventKind::Other,
            "{detail_type}"
        );
    }
}
