//! Backfill benchmark driver, run by `scripts/bench-backfill.sh` against a local S3 server
//! (endpoint and keys from the standard AWS environment). Each command prints one JSON line.
//!
//! - `populate BUCKET COUNT` puts COUNT small objects (untimed set-up).
//! - `raw-copy FROM TO CONCURRENCY` lists FROM (untimed), then times a tight loop of nothing but
//!   `CopyObject` calls for every key: the ceiling any copier can reach on this server.
//! - `backfill FROM TO CONCURRENCY` times the replicator's own backfill (library, one invocation).

use std::time::Instant;

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use futures::StreamExt;
use s3_replicator::backfill::{BackfillRequest, run_backfill};
use s3_replicator::invoke::SelfInvoker;
use s3_replicator::{Config, Replicator, S3Clients};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

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
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["populate", bucket, count] => populate(&client, bucket, count.parse()?).await,
        ["raw-copy", from, to, concurrency] => raw_copy(&client, from, to, concurrency.parse()?).await,
        ["backfill", from, to, concurrency] => backfill(&sdk, from, to, concurrency).await,
        _ => Err("usage: backfill populate BUCKET COUNT | raw-copy FROM TO CONCURRENCY | backfill FROM TO CONCURRENCY".into()),
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
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(from)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        keys.extend(
            page?
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
    }
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
    let vars = [
        ("SOURCE_BUCKET", from),
        ("DESTINATION_BUCKET", to),
        ("DESTINATION_ACL", "none"),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("BACKFILL_CONCURRENCY", concurrency),
    ];
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
