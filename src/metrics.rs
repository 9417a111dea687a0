//! CloudWatch metrics as Embedded Metric Format log lines: one line per invocation, no API calls.
//! Dimensions stay low-cardinality (the function's name only).

use serde_json::{Value, json};

/// Namespace of the metrics.
pub const NAMESPACE: &str = "S3Replicator";

/// What one invocation did, for its metric line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationMetrics {
    /// Objects copied.
    pub copied: u64,
    /// Objects skipped on purpose.
    pub skipped: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Objects that must be restored from an archive tier first.
    pub archived: u64,
    /// Copies in parts handed to a continuation invocation (not done yet, not failed).
    pub handed_off: u64,
    /// Bytes copied.
    pub bytes: i64,
    /// The longest time from an event to its copy completing, in milliseconds.
    pub max_lag_ms: Option<u64>,
    /// Keys a backfill hop listed in the source (none for events).
    pub listed: Option<u64>,
}

/// The EMF document for one invocation of `function_name` at `timestamp_ms`.
pub fn emf_document(function_name: &str, timestamp_ms: u64, metrics: &InvocationMetrics) -> Value {
    let mut definitions = vec![
        json!({"Name": "ObjectsCopied", "Unit": "Count"}),
        json!({"Name": "ObjectsSkipped", "Unit": "Count"}),
        json!({"Name": "ObjectsFailed", "Unit": "Count"}),
        json!({"Name": "ObjectsArchived", "Unit": "Count"}),
        json!({"Name": "ObjectsHandedOff", "Unit": "Count"}),
        json!({"Name": "BytesCopied", "Unit": "Bytes"}),
    ];
    let mut document = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": [],
            }],
        },
        "FunctionName": function_name,
        "ObjectsCopied": metrics.copied,
        "ObjectsSkipped": metrics.skipped,
        "ObjectsFailed": metrics.failed,
        "ObjectsArchived": metrics.archived,
        "ObjectsHandedOff": metrics.handed_off,
        "BytesCopied": metrics.bytes,
    });
    if let Some(lag) = metrics.max_lag_ms {
        definitions.push(json!({"Name": "ReplicationLag", "Unit": "Milliseconds"}));
        document["ReplicationLag"] = json!(lag);
    }
    if let Some(listed) = metrics.listed {
        definitions.push(json!({"Name": "BackfillKeysListed", "Unit": "Count"}));
        document["BackfillKeysListed"] = json!(listed);
    }
    document["_aws"]["CloudWatchMetrics"][0]["Metrics"] = Value::Array(definitions);
    document
}

/// Writes the invocation's metric line to standard output, where Lambda hands it to CloudWatch.
pub fn emit(function_name: &str, metrics: &InvocationMetrics) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    println!("{}", emf_document(function_name, now, metrics));
}

/// Milliseconds from an event's time (ISO-8601) to now.
pub fn lag_since(event_time: &str) -> Option<u64> {
    let then = aws_sdk_s3::primitives::DateTime::from_str(
        event_time,
        aws_sdk_s3::primitives::DateTimeFormat::DateTime,
    )
    .ok()?;
    let now = aws_sdk_s3::primitives::DateTime::from(std::time::SystemTime::now());
    let millis = (now.secs() - then.secs()) * 1000
        + (i64::from(now.subsec_nanos()) - i64::from(then.subsec_nanos())) / 1_000_000;
    u64::try_from(millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let metrics = InvocationMetrics {
            copied: 3,
            skipped: 1,
            failed: 2,
            archived: 1,
            handed_off: 1,
            bytes: 4096,
            max_lag_ms: Some(1500),
            listed: Some(7),
        };
        let document = emf_document("s3-replicator", 1_700_000_000_000, &metrics);
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "S3Replicator");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "ObjectsCopied",
                "ObjectsSkipped",
                "ObjectsFailed",
                "ObjectsArchived",
                "ObjectsHandedOff",
                "BytesCopied",
                "ReplicationLag",
                "BackfillKeysListed"
            ]
        );
        for name in names {
            assert!(document.get(name).is_some(), "{name} has no value");
        }
        assert_eq!(document["ObjectsFailed"], 2);
        assert_eq!(document["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let without_lag = emf_document("f", 0, &InvocationMetrics::default());
        assert!(without_lag.get("ReplicationLag").is_none());
        assert!(without_lag.get("BackfillKeysListed").is_none());
    }

    #[test]
    fn measures_lag_from_event_time() {
        let lag = lag_since("2020-01-01T00:00:00.000Z").unwrap();
        assert!(lag > 1_000 * 3600 * 24 * 365);
        assert_eq!(lag_since("not a time"), None);
    }
}
