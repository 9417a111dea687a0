//! Source and destination buckets in different regions: each call goes to its bucket's region,
//! and a bucket found elsewhere names itself and its real region.

mod support;

use s3_replicator::handle_payload;
use serde_json::json;
use support::{World, WorldOptions, s3_event};

fn event_from(region: &str, bucket: &str, key: &str) -> serde_json::Value {
    let mut event = s3_event("s3-put.json", bucket, key);
    event["Records"][0]["awsRegion"] = json!(region);
    event
}

#[tokio::test]
async fn copies_from_one_region_into_another() {
    let world = World::new(
        "xregion",
        WorldOptions {
            source_region: Some("us-east-1"),
            destination_region: Some("eu-west-1"),
            ..Default::default()
        },
    )
    .await;
    world.put_source("across/the sea.txt", b"bonjour").await;
    let replicator = world.replicator().await;
    let regions: Vec<&str> = replicator.clients().regions().collect();
    assert_eq!(regions, vec!["us-east-1", "eu-west-1"]);

    let summary = handle_payload(
        &event_from("us-east-1", &world.source_bucket, "across/the sea.txt"),
        &replicator,
    )
    .await
    .unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(
        world.destination_body("across/the sea.txt").await,
        b"bonjour"
    );
}

#[tokio::test]
async fn names_the_bucket_and_its_region_when_the_destination_region_is_wrong() {
    let world = World::new(
        "wrongregion",
        WorldOptions {
            source_region: Some("us-east-1"),
            destination_region: Some("eu-west-1"),
            configured_destination_region: Some("us-east-1"),
            ..Default::default()
        },
    )
    .await;
    world.put_source("lost.txt", b"x").await;
    let replicator = world.replicator().await;
    let error = handle_payload(
        &event_from("us-east-1", &world.source_bucket, "lost.txt"),
        &replicator,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(&format!(
            "bucket {} is not in region us-east-1 (S3 reports eu-west-1): set DESTINATION_REGION",
            world.destination_bucket
        )),
        "{error}"
    );
    assert!(world.destination_keys().await.is_empty());
}

#[tokio::test]
async fn reads_the_source_in_the_region_the_event_names() {
    let world = World::new(
        "srcregion",
        WorldOptions {
            source_region: Some("eu-central-1"),
            destination_region: Some("us-west-2"),
            ..Default::default()
        },
    )
    .await;
    world.put_source("from-frankfurt.txt", b"hallo").await;
    let event = event_from("eu-central-1", &world.source_bucket, "from-frankfurt.txt");

    // Deployed in us-west-2 without SOURCE_REGION: no client for the event's region.
    let elsewhere = world.replicator_with("us-west-2", &[]).await;
    let error = handle_payload(&event, &elsewhere)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("set SOURCE_REGION=eu-central-1"), "{error}");

    let configured = world
        .replicator_with("us-west-2", &[("SOURCE_REGION", "eu-central-1")])
        .await;
    let summary = handle_payload(&event, &configured).await.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");

    // Without a region in the event, SOURCE_REGION decides; a wrong one names the bucket.
    let mut no_region = event.clone();
    no_region["Records"][0]
        .as_object_mut()
        .unwrap()
        .remove("awsRegion");
    let wrong = world
        .replicator_with("us-west-2", &[("SOURCE_REGION", "ap-south-1")])
        .await;
    let error = handle_payload(&no_region, &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "bucket {} is not in region ap-south-1 (S3 reports eu-central-1): set SOURCE_REGION",
            world.source_bucket
        )),
        "{error}"
    );
    assert_eq!(world.destination_body("from-frankfurt.txt").await, b"hallo");
}
