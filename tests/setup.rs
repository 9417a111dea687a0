//! The setup commands of the binary on the emulator: the function's notification merged into a
//! source bucket that already has notifications, and its statements merged into a destination
//! bucket that already has a policy. What was there survives; what S3 would refuse is refused
//! before anything is written.

mod support;

use std::process::{Command, Output};

use aws_sdk_s3::types::{
    Event, EventBridgeConfiguration, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
};
use s3_replicator::ops::setup::read_notifications;
use serde_json::{Value, json};
use support::{Keys, World, WorldOptions, unique};

/// Runs the binary with `args` as the holder of `keys`, against the emulator.
fn run(world: &World, keys: &Keys, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_s3-replicator"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", &world.emulator.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", &keys.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &keys.secret_access_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("S3_FORCE_PATH_STYLE", "true");
    if let Some(token) = &keys.session_token {
        command.env("AWS_SESSION_TOKEN", token);
    }
    command.output().expect("the binary runs")
}

/// `subscribe` for keys under `data/`, sent to `arn`.
fn subscribe_args(world: &World, arn: &str) -> Vec<String> {
    let args = ["subscribe", "--bucket", &world.source_bucket];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend(["--destination-arn", arn, "--prefix", "data/"].map(String::from));
    args
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn queue_config(id: &str, arn: &str, events: &[&str], prefix: &str) -> QueueConfiguration {
    let mut queue = QueueConfiguration::builder()
        .id(id)
        .queue_arn(arn)
        .set_events(Some(events.iter().map(|e| Event::from(*e)).collect()));
    if !prefix.is_empty() {
        let rule = FilterRule::builder()
            .name(FilterRuleName::Prefix)
            .value(prefix)
            .build();
        queue = queue.filter(
            NotificationConfigurationFilter::builder()
                .key(S3KeyFilter::builder().filter_rules(rule).build())
                .build(),
        );
    }
    queue.build().unwrap()
}

async fn notifications(world: &World) -> NotificationConfiguration {
    read_notifications(&world.admin_a, &world.source_bucket)
        .await
        .unwrap()
}

async fn put_notifications(world: &World, config: NotificationConfiguration) {
    world
        .admin_a
        .put_bucket_notification_configuration()
        .bucket(&world.source_bucket)
        .notification_configuration(config)
        .send()
        .await
        .unwrap();
}

/// The keys of the object notifications waiting in a queue (S3's test events left out): every
/// message, since the emulator's receive stops when the queue has answered empty three times.
fn notified_keys(world: &World, queue_url: &str) -> Vec<String> {
    let batch = world.emulator.harness(
        "receive",
        json!({"queue_url": queue_url, "min_messages": 10, "max_messages": 10}),
    );
    let mut keys: Vec<String> = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
        .filter_map(|body| {
            // Notifications carry keys form-encoded.
            let key = body["Records"][0]["s3"]["object"]["key"]
                .as_str()?
                .replace('+', " ");
            Some(
                percent_encoding::percent_decode_str(&key)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn subscribe_keeps_the_bucket_notifications_and_unsubscribe_removes_only_its_own() {
    let world = World::new("subscribe", WorldOptions::default()).await;
    let thumbnails = world
        .emulator
        .harness("queue", json!({"queue": unique("thumbnails")}));
    let ours = world
        .emulator
        .harness("queue", json!({"queue": unique("replicator")}));
    let thumbnails_arn = thumbnails["queue_arn"].as_str().unwrap();
    let ours_arn = ours["queue_arn"].as_str().unwrap();
    let existing = queue_config(
        "thumbnails",
        thumbnails_arn,
        &["s3:ObjectCreated:*"],
        "images/",
    );
    let before = NotificationConfiguration::builder()
        .queue_configurations(existing.clone())
        .event_bridge_configuration(EventBridgeConfiguration::builder().build())
        .build();
    put_notifications(&world, before.clone()).await;
    assert_eq!(
        notifications(&world).await,
        before,
        "the emulator keeps EventBridge"
    );

    let args = subscribe_args(&world, ours_arn);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dry = run(
        &world,
        &world.emulator.admin_a,
        &[&args[..], &["--dry-run"]].concat(),
    );
    assert!(dry.status.success(), "{dry:?}");
    let said = stdout(&dry);
    assert!(said.contains("keep   queue \"thumbnails\""), "{said}");
    assert!(said.contains("add    queue \"s3-replicator\""), "{said}");
    assert!(said.contains("dry run: nothing written"), "{said}");
    assert_eq!(
        notifications(&world).await,
        before,
        "a dry run writes nothing"
    );

    let applied = run(&world, &world.emulator.admin_a, &args);
    assert!(applied.status.success(), "{applied:?}");
    let after = notifications(&world).await;
    assert!(after.event_bridge_configuration().is_some(), "{after:?}");
    assert_eq!(after.queue_configurations()[0], existing);
    let added = &after.queue_configurations()[1];
    assert_eq!(added.id(), Some("s3-replicator"));
    assert_eq!(added.queue_arn(), ours_arn);
    let events: Vec<&str> = added.events().iter().map(|e| e.as_str()).collect();
    assert_eq!(events, s3_replicator::decode::NOTIFICATION_EVENTS);
    // Running it again changes nothing.
    let again = run(&world, &world.emulator.admin_a, &args);
    assert!(stdout(&again).contains("nothing to change"), "{again:?}");

    // Both subscribers get their own keys.
    world.put_source("images/cat.jpg", b"cat").await;
    world.put_source("data/table.csv", b"a,b").await;
    assert_eq!(
        notified_keys(&world, ours["queue_url"].as_str().unwrap()),
        ["data/table.csv"]
    );
    assert_eq!(
        notified_keys(&world, thumbnails["queue_url"].as_str().unwrap()),
        ["images/cat.jpg"]
    );

    let removed = run(
        &world,
        &world.emulator.admin_a,
        &["unsubscribe", "--bucket", &world.source_bucket],
    );
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(notifications(&world).await, before);
}

#[tokio::test]
async fn subscribe_refuses_an_overlap_before_writing_and_s3_would_too() {
    let world = World::new("overlap", WorldOptions::default()).await;
    let other = world
        .emulator
        .harness("queue", json!({"queue": unique("everything")}));
    let other_arn = other["queue_arn"].as_str().unwrap();
    let everything = queue_config("everything", other_arn, &["s3:ObjectCreated:Put"], "");
    let before = NotificationConfiguration::builder()
        .queue_configurations(everything.clone())
        .build();
    put_notifications(&world, before.clone()).await;

    let ours_arn = "arn:aws:sqs:us-east-1:111111111111:replicator-overlap";
    let args = subscribe_args(&world, ours_arn);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = run(&world, &world.emulator.admin_a, &args);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("\"everything\""), "{message}");
    assert!(message.contains("s3:ObjectCreated:*"), "{message}");
    assert!(message.contains("TriggerType=EventBridge"), "{message}");
    assert_eq!(notifications(&world).await, before, "nothing was written");

    // The emulator refuses the overlapping configuration as S3 does.
    let overlapping = NotificationConfiguration::builder()
        .queue_configurations(everything)
        .queue_configurations(queue_config(
            "s3-replicator",
            ours_arn,
            &["s3:ObjectCreated:*"],
            "data/",
        ))
        .build();
    let error = world
        .admin_a
        .put_bucket_notification_configuration()
        .bucket(&world.source_bucket)
        .notification_configuration(overlapping)
        .send()
        .await
        .unwrap_err();
    let code = error.as_service_error().and_then(|e| e.meta().code());
    assert_eq!(code, Some("InvalidArgument"), "{error:?}");

    // EventBridge delivery is the way beside it: the other notification stays.
    let eventbridge = run(
        &world,
        &world.emulator.admin_a,
        &[
            "subscribe",
            "--bucket",
            &world.source_bucket,
            "--eventbridge",
        ],
    );
    assert!(eventbridge.status.success(), "{eventbridge:?}");
    let after = notifications(&world).await;
    assert!(after.event_bridge_configuration().is_some());
    assert_eq!(after.queue_configurations(), before.queue_configurations());
}

async fn bucket_policy(world: &World) -> Value {
    let policy = world
        .admin_b
        .get_bucket_policy()
        .bucket(&world.destination_bucket)
        .send()
        .await
        .unwrap();
    serde_json::from_str(policy.policy().unwrap()).unwrap()
}

/// Whether the function can replicate a new object now.
async fn replicates(world: &World, key: &str) -> bool {
    world.put_source(key, key.as_bytes()).await;
    let replicator = world.replicator().await;
    let reported = world.put_event(&replicator, key).await.is_ok();
    let replica = world
        .admin_b
        .head_object()
        .bucket(&world.destination_bucket)
        .key(key)
        .send()
        .await;
    reported && replica.is_ok()
}

#[tokio::test]
async fn merge_policy_keeps_the_bucket_policy_and_grants_what_the_function_needs() {
    let world = World::new(
        "mergepolicy",
        WorldOptions {
            without_bucket_policy: true,
            ..Default::default()
        },
    )
    .await;
    let foreign = json!({
        "Sid": "AnalyticsRead",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
        "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{}/*", world.destination_bucket),
    });
    let before = json!({"Version": "2012-10-17", "Statement": [foreign]});
    world
        .admin_b
        .put_bucket_policy()
        .bucket(&world.destination_bucket)
        .policy(before.to_string())
        .send()
        .await
        .unwrap();
    let grant = world.grant();
    let mut args = vec![
        "merge-policy",
        "--role-arn",
        &grant.role_arn,
        "--bucket",
        &grant.bucket,
    ];
    if !grant.sends_acl {
        args.push("--no-acl");
    }

    let dry = run(
        &world,
        &world.emulator.admin_b,
        &[&args[..], &["--dry-run"]].concat(),
    );
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        stdout(&dry).contains("add     \"AllowS3ReplicatorWrites\""),
        "{dry:?}"
    );
    assert_eq!(
        bucket_policy(&world).await,
        before,
        "a dry run writes nothing"
    );
    assert!(
        !replicates(&world, "before.txt").await,
        "B's policy grants nothing yet"
    );

    let merged = run(&world, &world.emulator.admin_b, &args);
    assert!(merged.status.success(), "{merged:?}");
    let policy = bucket_policy(&world).await;
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements[0], foreign);
    assert_eq!(
        statements[1..],
        grant.bucket_policy()["Statement"].as_array().unwrap()[..]
    );
    assert!(replicates(&world, "merged.txt").await);
    let again = run(&world, &world.emulator.admin_b, &args);
    assert!(stdout(&again).contains("nothing to change"), "{again:?}");

    let removed = run(
        &world,
        &world.emulator.admin_b,
        &[&args[..], &["--remove"]].concat(),
    );
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(bucket_policy(&world).await, before);
    assert!(!replicates(&world, "removed.txt").await);
}
