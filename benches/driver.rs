//! The benchmarks' driver, run by `scripts/bench-backfill.sh` and `scripts/bench-event.sh`
//! against a local S3 server (endpoint and keys from the standard AWS environment). Each command
//! prints JSON lines.
//!
//! - `populate BUCKET COUNT` puts COUNT small objects (untimed set-up).
//! - `raw-copy FROM TO CONCURRENCY` lists FROM (untimed), then times a tight loop of nothing but
//!   `CopyObject` calls for every key: the ceiling any copier can reach on this server.
//! - `backfill FROM TO CONCURRENCY` times the replicator's own backfill (library, one invocation);
//!   `default` leaves `BACKFILL_CONCURRENCY` unset.
//! - `events BUCKET BATCH` lists BUCKET and prints, a line each, the SQS events (BATCH messages of
//!   one S3 notification each) that S3 and SQS would deliver for its objects' uploads.
//! - `count BUCKET` prints how many objects BUCKET holds.
//! - `put-large BUCKET KEY MIB PART_MIB` uploads an object of MIB MiB in parts of PART_MIB MiB
//!   (untimed set-up).
//! - `large-copy FROM KEY TO CONCURRENCY PER_INVOCATION` times the replicator copying KEY in
//!   parts (the source's own layout), CONCURRENCY parts at once; with PER_INVOCATION a number, the
//!   copy is handed from invocation to invocation every PER_INVOCATION parts (`all`: one
//!   invocation).
//! - `latency-proxy UPSTREAM LEAST_MS MOST_MS [untagged]` forwards to UPSTREAM, delaying each
//!   request by LEAST_MS to MOST_MS (the test suite's proxy); with `untagged`, it answers the
//!   object tagging API itself, as for untagged objects (Garage has none). Prints its endpoint,
//!   then serves until killed.

// The benchmarks use the proxy's latency, not its fault counters.
#[allow(dead_code)]
#[path = "../tests/support/fault_proxy.rs"]
mod fault_proxy;

use std::time::Instant;

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::Object;
use futures::StreamExt;
use s3_replicator::backfill::{BackfillRequest, run_backfill};
use s3_replicator::copy::Outcome;
use s3_replicator::copy::chain::{Budget, Continuation};
use s3_replicator::decode::{ObjectEvent, ObjectEventKind};
use s3_replicator::invoke::SelfInvoker;
use s3_replicator::{Config, Replicator, S3Clients};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: driver populate BUCKET COUNT | raw-copy FROM TO CONCURRENCY | \
backfill FROM TO CONCURRENCY|default | events BUCKET BATCH | count BUCKET | \
put-large BUCKET KEY MIB PART_MIB | large-copy FROM KEY TO CONCURRENCY PER_INVOCATION|all | \
latency-proxy UPSTREAM LEAST_MS MOST_MS [untagged]";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let client = Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["populate", bucket, count] => populate(&client, bucket, count.parse()?).await,
        ["raw-copy", from, to, concurrency] => {
            raw_copy(&client, from, to, concurrency.parse()?).await
        }
        ["backfill", from, to, concurrency] => backfill(&sdk, from, to, concurrency).await,
        ["events", bucket, batch] => events(&client, bucket, batch.parse()?).await,
        ["count", bucket] => {
            let objects = list(&client, bucket).await?.len();
            println!("{}", json!({ "command": "count", "objects": objects }));
            Ok(())
        }
        ["put-large", bucket, key, mib, part_mib] => {
            put_large(&client, bucket, key, mib.parse()?, part_mib.parse()?).await
        }
        ["large-copy", from, key, to, concurrency, per_invocation] => {
            large_copy(&sdk, from, key, to, concurrency, per_invocation).await
        }
        ["latency-proxy", upstream, least, most] => {
            latency_proxy(upstream, least.parse()?, most.parse()?, false).await
        }
        ["latency-proxy", upstream, least, most, "untagged"] => {
            latency_proxy(upstream, least.parse()?, most.parse()?, true).await
        }
        _ => Err(USAGE.into()),
    }
}

async fn populate(client: &Client, bucket: &str, count: usize) -> Result<(), Error> {
    let started = Instant::now();
    let results: Vec<Result<(), Error>> = futures::stream::iter(0..count)
        .map(|i| async move {
            client
                .put_object()
                .bucket(bucket)
                .key(format!("data/{:02}/object-{i:06}.json", i % 50))
                .content_type("application/json")
                .metadata("sequence", i.to_string())
                .body(
                    format!(
                        "{{\"object\": {i}, \"padding\": \"{}\"}}",
                        "x".repeat(i % 200)
                    )
                    .into_bytes()
                    .into(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, Error>>()?;
    report("populate", count as u64, started);
    Ok(())
}

async fn raw_copy(client: &Client, from: &str, to: &str, concurrency: usize) -> Result<(), Error> {
    let keys: Vec<String> = list(client, from)
        .await?
        .into_iter()
        .filter_map(|o| o.key)
        .collect();
    let started = Instant::now();
    let failures = futures::stream::iter(keys.iter())
        .map(|key| async move {
            client
                .copy_object()
                .bucket(to)
                .key(key)
                .copy_source(format!("{from}/{key}"))
                .send()
                .await
                .is_err()
        })
        .buffer_unordered(concurrency)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    if failures > 0 {
        return Err(format!("{failures} raw copies failed").into());
    }
    report("raw-copy", keys.len() as u64, started);
    Ok(())
}

async fn backfill(
    sdk: &aws_config::SdkConfig,
    from: &str,
    to: &str,
    concurrency: &str,
) -> Result<(), Error> {
    let mut vars = Vec::new();
    if concurrency != "default" {
        vars.push(("BACKFILL_CONCURRENCY", concurrency));
    }
    let replicator = replicator_with(sdk, from, to, &vars)?;
    let started = Instant::now();
    let result = run_backfill(
        &BackfillRequest::default(),
        &replicator,
        None,
        SelfInvoker::default(),
    )
    .await?;
    if result.failed > 0 {
        return Err(format!(
            "{} objects failed: {:?}",
            result.failed,
            result.failures.first()
        )
        .into());
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "command": "backfill", "listed": result.listed, "copied": result.copied,
            "unchanged": result.unchanged, "seconds": elapsed,
            "lowest_concurrency": result.lowest_concurrency,
            "highest_concurrency": result.highest_concurrency,
            "concurrency": result.concurrency,
            "objects_per_second": result.listed as f64 / elapsed,
        })
    );
    Ok(())
}

const MIB: usize = 1024 * 1024;

/// Bytes that do not repeat from part to part (a content-addressed store would dedupe copies).
fn part_bytes(number: usize, size: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ number as u64;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn put_large(
    client: &Client,
    bucket: &str,
    key: &str,
    mib: usize,
    part_mib: usize,
) -> Result<(), Error> {
    let started = Instant::now();
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
    let upload_id = upload.upload_id().unwrap_or_default();
    let parts = mib.div_ceil(part_mib);
    let uploaded: Vec<Result<aws_sdk_s3::types::CompletedPart, Error>> =
        futures::stream::iter(1..=parts)
            .map(|number| async move {
                let size = (part_mib * MIB).min(mib * MIB - (number - 1) * part_mib * MIB);
                let part = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number as i32)
                    .body(part_bytes(number, size).into())
                    .send()
                    .await
                    .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
                Ok(aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(number as i32)
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .build())
            })
            .buffered(4)
            .collect()
            .await;
    let completed = uploaded.into_iter().collect::<Result<Vec<_>, Error>>()?;
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
    report("put-large", 1, started);
    Ok(())
}

async fn large_copy(
    sdk: &aws_config::SdkConfig,
    from: &str,
    key: &str,
    to: &str,
    concurrency: &str,
    per_invocation: &str,
) -> Result<(), Error> {
    let mut vars = vec![
        ("MULTIPART_THRESHOLD", "5MiB"),
        ("PART_CONCURRENCY", concurrency),
    ];
    if per_invocation != "all" {
        vars.push(("PARTS_PER_INVOCATION", per_invocation));
    }
    let replicator = replicator_with(sdk, from, to, &vars)?;
    let event = ObjectEvent {
        kind: ObjectEventKind::Created,
        event_name: "ObjectCreated:CompleteMultipartUpload".into(),
        bucket: from.to_string(),
        key: key.to_string(),
        alternate_keys: Vec::new(),
        size: None,
        etag: None,
        version_id: None,
        sequencer: None,
        event_time: None,
        region: None,
    };
    let budget = Budget::default();
    let started = Instant::now();
    let mut outcome = replicator.replicate(&event, &budget).await;
    let mut invocations = 1;
    while let Outcome::HandedOff {
        resume: Some(payload),
        ..
    } = &outcome
    {
        let chain = Continuation::from_value(&payload["continue"])?;
        outcome = replicator.resume(&chain, &budget).await;
        invocations += 1;
    }
    let Outcome::Copied { bytes, .. } = outcome else {
        return Err(format!("not copied: {outcome:?}").into());
    };
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "command": "large-copy", "bytes": bytes, "seconds": elapsed,
            "invocations": invocations,
            "mib_per_second": bytes as f64 / MIB as f64 / elapsed,
        })
    );
    Ok(())
}

/// The replicator from `from` to `to` (no ACL, path-style requests), configured further by
/// `extra` (the function's environment variables).
fn replicator_with(
    sdk: &aws_config::SdkConfig,
    from: &str,
    to: &str,
    extra: &[(&str, &str)],
) -> Result<Replicator, Error> {
    let base = [
        ("SOURCE_BUCKET", from),
        ("DESTINATION_BUCKET", to),
        ("DESTINATION_ACL", "none"),
        ("S3_FORCE_PATH_STYLE", "true"),
    ];
    let config = Config::from_lookup(|name| {
        base.iter()
            .chain(extra)
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })?;
    Ok(Replicator::new(S3Clients::new(sdk, &config)?, config))
}

fn report(command: &str, objects: u64, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"command": command, "objects": objects, "seconds": elapsed,
               "objects_per_second": objects as f64 / elapsed})
    );
}

/// Every object of `bucket`.
async fn list(client: &Client, bucket: &str) -> Result<Vec<Object>, Error> {
    let mut objects = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        objects.extend(page?.contents().iter().cloned());
    }
    Ok(objects)
}

/// Prints the SQS events for the uploads of every object of `bucket`, `batch` messages each,
/// each message one S3 notification of one record (as S3 sends them), keys form-encoded.
async fn events(client: &Client, bucket: &str, batch: usize) -> Result<(), Error> {
    let objects = list(client, bucket).await?;
    for (number, chunk) in objects.chunks(batch.max(1)).enumerate() {
        let records: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, object)| sqs_record(bucket, object, number * batch + i))
            .collect();
        println!("{}", json!({ "Records": records }));
    }
    Ok(())
}

fn sqs_record(bucket: &str, object: &Object, sequence: usize) -> serde_json::Value {
    const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'/')
        .remove(b'*');
    let key = percent_encoding::utf8_percent_encode(object.key().unwrap_or_default(), FORM)
        .to_string()
        .replace("%20", "+");
    let notification = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-12-05T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAINPONIXQXHT3IKHL2"},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "s3-replicator",
            "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {
                "key": key, "size": object.size().unwrap_or_default(),
                "eTag": object.e_tag().unwrap_or_default().trim_matches('"'),
                "sequencer": format!("{sequence:018X}"),
            },
        },
    }]});
    json!({
        "messageId": format!("message-{sequence}"), "receiptHandle": format!("handle-{sequence}"),
        "body": notification.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764936000000"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:111111111111:s3-replicator-notifications",
        "awsRegion": "us-east-1",
    })
}

/// Serves the test suite's proxy with a latency and no faults, until killed.
async fn latency_proxy(
    upstream: &str,
    least_ms: u64,
    most_ms: u64,
    untagged: bool,
) -> Result<(), Error> {
    let plan = fault_proxy::FaultPlan {
        percent: 0,
        hold: std::time::Duration::ZERO,
        max_holds: 0,
        latency: (
            std::time::Duration::from_millis(least_ms),
            std::time::Duration::from_millis(most_ms),
        ),
        untagged,
    };
    let proxy = fault_proxy::FaultProxy::start(upstream, plan).await;
    println!(
        "{}",
        json!({ "command": "latency-proxy", "endpoint": proxy.endpoint })
    );
    std::future::pending::<()>().await;
    Ok(())
}
