//! Fan-out: one continued backfill per shard (by default the first-level prefixes), each
//! started by an asynchronous invocation of the function.

use aws_sdk_s3::types::EncodingType;
use serde_json::json;

use super::listing::listing_error;
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
) -> Result<Vec<String>, BackfillError> {
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
    for shard in &shards {
        let payload = json!({ "backfill": BackfillRequest {
            prefix: shard.clone(),
            dry_run: request.dry_run,
            continue_backfill: true,
            ..Default::default()
        }});
        invoker
            .start(&payload)
            .await
            .map_err(|message| BackfillError::Continuation {
                message,
                resume: payload.clone(),
            })?;
        tracing::info!(shard = %shard, "backfill shard started");
    }
    Ok(shards)
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
