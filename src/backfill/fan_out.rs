//! Fan-out: one continued backfill per shard (by default the first-level prefixes), each
//! started by an asynchronous invocation of the function once every shard's lock is reserved.

use aws_sdk_s3::types::EncodingType;
use serde_json::json;

use std::time::SystemTime;

use super::listing::listing_error;
use super::lock;
use super::request::{BackfillError, BackfillRequest};
use crate::copy::Replicator;
use crate::error::{Side, classify};
use crate::invoke::SelfInvoker;
use crate::keys::decode_listed_key;

/// Starts one continued backfill per shard and returns the shard prefixes.
pub(super) async fn fan_out(
    request: &BackfillRequest,
    prefix: &str,
    replicator: &Replicator,
    invoker: SelfInvoker<'_>,
    deadline: Option<SystemTime>,
) -> Result<Vec<String>, BackfillError> {
    let run = request.run.as_deref().unwrap_or_default();
    let shards = if request.shards.is_empty() {
        first_level_prefixes(replicator, prefix).await?
    } else {
        for shard in &request.shards {
            if !shard.starts_with(prefix) {
                return Err(BackfillError::InvalidRequest(format!(
                    "shard {shard:?} lies outside prefix {prefix:?}"
                )));
            }
        }
        request.shards.clone()
    };
    let mut reserved = Vec::new();
    for shard in &shards {
        if request.dry_run {
            reserved.push((shard.clone(), None));
            continue;
        }
        match lock::reserve(replicator, shard, run, deadline).await {
            Ok(Some(lock)) => reserved.push((shard.clone(), Some(lock))),
            Ok(None) => {
                tracing::info!(shard = %shard, "backfill shard already started by this chain")
            }
            Err(error) => {
                release_all(replicator, &reserved).await;
                return Err(error);
            }
        }
    }
    for (started, (shard, _)) in reserved.iter().enumerate() {
        let payload = json!({ "backfill": BackfillRequest {
            prefix: shard.clone(),
            dry_run: request.dry_run,
            continue_backfill: true,
            run: Some(run.to_string()),
            ..Default::default()
        }});
        if let Err(message) = invoker.start(&payload).await {
            release_all(replicator, &reserved[started..]).await;
            return Err(BackfillError::Continuation {
                message,
                resume: payload.clone(),
            });
        }
        tracing::info!(shard = %shard, run = %run, "backfill shard started");
    }
    Ok(shards)
}

/// Releases the reservations of shards that will not be started.
async fn release_all(replicator: &Replicator, reserved: &[(String, Option<lock::Lock>)]) {
    for lock in reserved.iter().filter_map(|(_, lock)| lock.as_ref()) {
        lock::release(replicator, lock).await;
    }
}

async fn first_level_prefixes(
    replicator: &Replicator,
    prefix: &str,
) -> Result<Vec<String>, BackfillError> {
    let config = replicator.config();
    let mut pages = replicator
        .clients()
        .source()
        .list_objects_v2()
        .bucket(&config.source_bucket)
        .prefix(prefix)
        .delimiter("/")
        .encoding_type(EncodingType::Url)
        .into_paginator()
        .send();
    let mut shards = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| BackfillError::Listing {
            error: Box::new(listing_error(
                replicator,
                Side::Source,
                classify(err),
                prefix,
            )),
            copied: 0,
            failed: 0,
            resume: json!({ "backfill": { "prefix": prefix, "fan_out": true } }),
        })?;
        shards.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(decode_listed_key)),
        );
    }
    Ok(shards)
}
