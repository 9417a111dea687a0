//! The test bed itself: the emulator must refuse what AWS refuses, or the replication tests
//! would prove nothing about the cross-account grant.

mod support;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectCannedAcl;
use serde_json::{Value, json};
use support::{Emulator, Keys, unique};

async fn bucket(client: &Client, name: &str) -> String {
    let name = unique(name);
    client.create_bucket().bucket(&name).send().await.unwrap();
    name
}

fn role(emulator: &Emulator, account: &str, policies: Value) -> (String, Client) {
    let role = emulator.harness(
        "role",
        json!({"account": account, "name": unique("role"), "policies": policies}),
    );
    let keys = Keys {
        access_key_id: role["access_key_id"].as_str().unwrap().into(),
        secret_access_key: role["secret_access_key"].as_str().unwrap().into(),
        session_token: role["session_token"].as_str().map(str::to_string),
    };
    (
        role["role_arn"].as_str().unwrap().to_string(),
        emulator.client(&keys),
    )
}

fn allow(actions: &[&str], resources: &[String]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": resources}
    ]})
}

fn bucket_policy(effect: &str, principal: &str, actions: &[&str], resource: String) -> String {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": effect, "Principal": {"AWS": principal}, "Action": actions, "Resource": resource}
    ]})
    .to_string()
}

async fn put(client: &Client, bucket: &str, key: &str) -> Result<(), String> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.into_service_error().code().unwrap_or("?").to_string())
}

#[tokio::test]
async fn cross_account_write_needs_both_identity_and_bucket_policy() {
    let emulator = Emulator::shared();
    let admin_b = emulator.client(&emulator.admin_b);
    let destination = bucket(&admin_b, "xacct").await;
    let (role_arn, writer) = role(
        emulator,
        "a",
        json!({"w": allow(&["s3:PutObject"], &[format!("arn:aws:s3:::{destination}/*")])}),
    );
    assert_eq!(
        put(&writer, &destination, "k").await,
        Err("AccessDenied".into())
    );

    admin_b
        .put_bucket_policy()
        .bucket(&destination)
        .policy(bucket_policy(
            "Allow",
            &role_arn,
            &["s3:PutObject"],
            format!("arn:aws:s3:::{destination}/*"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(put(&writer, &destination, "k").await, Ok(()));

    // The bucket policy alone is not enough for a role whose identity policy does not allow it.
    let (bare_arn, bare) = role(emulator, "a", json!({}));
    admin_b
        .put_bucket_policy()
        .bucket(&destination)
        .policy(bucket_policy(
            "Allow",
            &bare_arn,
            &["s3:PutObject"],
            format!("arn:aws:s3:::{destination}/*"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put(&bare, &destination, "k2").await,
        Err("AccessDenied".into())
    );
}

#[tokio::test]
async fn within_one_account_either_policy_suffices_and_explicit_deny_wins() {
    let emulator = Emulator::shared();
    let admin_a = emulator.client(&emulator.admin_a);
    let source = bucket(&admin_a, "same").await;
    let (role_arn, reader) = role(emulator, "a", json!({}));
    assert_eq!(put(&reader, &source, "k").await, Err("AccessDenied".into()));
    let resource = format!("arn:aws:s3:::{source}/*");
    admin_a
        .put_bucket_policy()
        .bucket(&source)
        .policy(bucket_policy(
            "Allow",
            &role_arn,
            &["s3:PutObject"],
            resource.clone(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(put(&reader, &source, "k").await, Ok(()));

    let (denied_arn, denied) = role(
        emulator,
        "a",
        json!({"all": allow(&["s3:*"], &["*".into()])}),
    );
    assert_eq!(put(&denied, &source, "k").await, Ok(()));
    admin_a
        .put_bucket_policy()
        .bucket(&source)
        .policy(bucket_policy("Deny", &denied_arn, &["s3:Put*"], resource))
        .send()
        .await
        .unwrap();
    assert_eq!(put(&denied, &source, "k").await, Err("AccessDenied".into()));
}

#[tokio::test]
async fn copy_needs_read_on_the_source() {
    let emulator = Emulator::shared();
    let admin_a = emulator.client(&emulator.admin_a);
    let source = bucket(&admin_a, "copysrc").await;
    let destination = bucket(&admin_a, "copydst").await;
    put(&admin_a, &source, "obj").await.unwrap();
    let (_, writer_only) = role(
        emulator,
        "a",
        json!({"w": allow(&["s3:PutObject", "s3:PutObjectTagging"], &[format!("arn:aws:s3:::{destination}/*")])}),
    );
    let copy = |client: Client| {
        let (source, destination) = (source.clone(), destination.clone());
        async move {
            client
                .copy_object()
                .bucket(&destination)
                .key("obj")
                .copy_source(format!("{source}/obj"))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    let e = e.into_service_error();
                    (
                        e.code().unwrap_or("?").to_string(),
                        e.message().unwrap_or("").to_string(),
                    )
                })
        }
    };
    let (code, message) = copy(writer_only).await.unwrap_err();
    assert_eq!(code, "AccessDenied");
    assert!(message.contains("s3:GetObject"), "{message}");

    let (_, reader_writer) = role(
        emulator,
        "a",
        json!({"rw": allow(
            &["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:GetObjectTagging"],
            &[format!("arn:aws:s3:::{destination}/*"), format!("arn:aws:s3:::{source}/*")]
        )}),
    );
    assert_eq!(copy(reader_writer).await, Ok(()));
}

#[tokio::test]
async fn missing_object_is_403_without_list_bucket_and_404_with_it() {
    let emulator = Emulator::shared();
    let admin_a = emulator.client(&emulator.admin_a);
    let source = bucket(&admin_a, "missing").await;
    let objects = format!("arn:aws:s3:::{source}/*");
    let head_status = |client: Client| {
        let source = source.clone();
        async move {
            let error = client
                .head_object()
                .bucket(&source)
                .key("absent")
                .send()
                .await
                .unwrap_err();
            error.raw_response().unwrap().status().as_u16()
        }
    };
    let (_, get_only) = role(
        emulator,
        "a",
        json!({"r": allow(&["s3:GetObject"], std::slice::from_ref(&objects))}),
    );
    assert_eq!(head_status(get_only).await, 403);
    let (_, get_and_list) = role(
        emulator,
        "a",
        json!({"r": allow(&["s3:GetObject", "s3:ListBucket"], &[objects, format!("arn:aws:s3:::{source}")])}),
    );
    assert_eq!(head_status(get_and_list).await, 404);
}

#[tokio::test]
async fn refuses_acls_under_bucket_owner_enforced_and_stale_conditional_copies() {
    let emulator = Emulator::shared();
    let admin_a = emulator.client(&emulator.admin_a);
    let bucket_name = bucket(&admin_a, "acl").await;
    let error = admin_a
        .put_object()
        .bucket(&bucket_name)
        .key("public")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error.into_service_error().code(),
        Some("AccessControlListNotSupported")
    );
    admin_a
        .put_object()
        .bucket(&bucket_name)
        .key("owned")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();

    let error = admin_a
        .copy_object()
        .bucket(&bucket_name)
        .key("copy")
        .copy_source(format!("{bucket_name}/owned"))
        .copy_source_if_match("\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 412);
}
