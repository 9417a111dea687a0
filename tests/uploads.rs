//! The multipart uploads the function left open in B: the `uploads` invocation (and command)
//! lists those its role started under the prefix, older than asked, and aborts them on request;
//! uploads started by anyone else, or elsewhere, are left alone.

mod support;

use s3_replicator::handle_payload;
use serde_json::{Value, json};
use support::{World, WorldOptions};

/// Starts an upload of `key` in B with `client`; returns its id.
async fn start_upload(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("start an upload of {key}: {e:?}"))
        .upload_id()
        .unwrap()
        .to_string()
}

fn stale_keys(report: &Value) -> Vec<String> {
    let mut keys: Vec<String> = report["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn the_functions_old_uploads_are_listed_and_aborted_and_no_other() {
    let world = World::new(
        "uploads",
        WorldOptions {
            destination_prefix: "from-a/".into(),
            ..Default::default()
        },
    )
    .await;
    let replicator = world.replicator().await;
    let function = replicator.clients().destination();
    let bucket = &world.destination_bucket;
    // Two of the function's (one key needing URL encoding in a listing), one of B's admin under
    // the prefix, and one of the function's outside it.
    let ours = ["from-a/left.bin", "from-a/a b+c%.bin"];
    for key in ours {
        start_upload(function, bucket, key).await;
    }
    start_upload(&world.admin_b, bucket, "from-a/admins.bin").await;
    let admins_elsewhere = start_upload(&world.admin_b, bucket, "elsewhere/x.bin").await;
    assert_eq!(world.open_uploads().await, 4);

    // Started just now: none is an hour old.
    let report = handle_payload(&json!({"uploads": {"older_than_hours": 1}}), &replicator)
        .await
        .unwrap();
    assert_eq!(report["open"], 3, "{report}");
    assert_eq!(stale_keys(&report), Vec::<String>::new(), "{report}");
    assert_eq!(report["role_arn"], world.role_arn.as_str());

    // Any age: the function's two, listed, not aborted.
    let report = handle_payload(&json!({"uploads": {"older_than_hours": 0}}), &replicator)
        .await
        .unwrap();
    let mut expected: Vec<String> = ours.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(stale_keys(&report), expected, "{report}");
    for upload in report["stale"].as_array().unwrap() {
        assert!(
            upload["initiator"]
                .as_str()
                .unwrap()
                .contains(":assumed-role/"),
            "{upload}"
        );
        assert!(upload.get("aborted").is_none(), "{upload}");
    }
    assert_eq!(world.open_uploads().await, 4);

    // Aborted on request: the admin's uploads remain.
    let report = handle_payload(
        &json!({"uploads": {"older_than_hours": 0, "abort": true}}),
        &replicator,
    )
    .await
    .unwrap();
    assert_eq!(
        (report["aborted"].as_u64(), report["failed"].as_u64()),
        (Some(2), Some(0))
    );
    let remaining = world
        .admin_b
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut left: Vec<(&str, &str)> = remaining
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap(), u.upload_id().unwrap()))
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[0].0, "elsewhere/x.bin");
    assert_eq!(left[0].1, admins_elsewhere);
    assert_eq!(left[1].0, "from-a/admins.bin");

    // A request it cannot run is refused before anything is listed.
    let refused = handle_payload(&json!({"uploads": {"older_than_hours": -1}}), &replicator)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("older_than_hours"),
        "{refused}"
    );
}

#[tokio::test]
async fn without_b_s_grant_the_listing_fails_with_s3_s_error() {
    let world = World::new(
        "uploadsdenied",
        WorldOptions {
            drop_bucket_actions: vec!["s3:ListBucketMultipartUploads".into()],
            ..Default::default()
        },
    )
    .await;
    let error = handle_payload(&json!({"uploads": {}}), &world.replicator().await)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("AccessDenied"), "{text}");
    assert!(text.contains(&world.destination_bucket), "{text}");
}
