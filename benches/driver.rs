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
//! - `latency-proxy UPSTREAM LEAST_MS MOST_MS` forwards to UPSTREAM, delaying each request by
//!   LEAST_MS to MOST_MS (the test suite's proxy); prints its endpoint, then serves until killed.

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
use s3_replicator::invoke::SelfInvoker;
use s3_replicator::{Config, Replicator, S3Clients};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: driver populate BUCKET COUNT | raw-copy FROM TO CONCURRENCY | \
backfill FROM TO CONCURRENCY|default | events BUCKET BATCH | count BUCKET | \
latency-proxy UPSTREAM LEAST_MS MOST_MS";

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
        ["latency-proxy", upstream, least, most] => {
            latency_proxy(upstream, least.parse()?, most.parse()?).await
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
    let mut vars = vec![
        ("SOURCE_BUCKET", from),
        ("DESTINATION_BUCKET", to),
        ("DESTINATION_ACL", "none"),
        ("S3_FORCE_PATH_STYLE", "true"),
    ];
    if concurrency != "default" {
        vars.push(("BACKFILL_CONCURRENCY", concurrency));
    }
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })?;
    let replicator = Replicator::new(S3Clients::new(sdk, &config)?, config);
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
async fn latency_proxy(upstream: &str, least_ms: u64, most_ms: u64) -> Result<(), Error> {
    let plan = fault_proxy::FaultPlan {
        percent: 0,
        hold: std::time::Duration::ZERO,
        max_holds: 0,
        latency: (
            std::time::Duration::from_millis(least_ms),
            std::time::Duration::from_millis(most_ms),
        ),
    };
    let proxy = fault_proxy::FaultProxy::start(upstream, plan).await;
    println!(
        "{}",
        json!({ "command": "latency-proxy", "endpoint": proxy.endpoint })
    );
    std::future::pending::<()>().await;
    Ok(())
}
