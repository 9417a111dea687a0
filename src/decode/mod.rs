//! Decoding invocation payloads: S3 notifications delivered directly, through SQS, through
//! SNS (alone or inside SQS), and EventBridge events from S3, into [`ObjectEvent`]s.
//!
//! Decoding is per record: one malformed record or SQS message fails alone, and the good ones
//! in the same payload are still processed.

use aws_lambda_events::event::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;

use crate::keys::decode_event_key;

/// The S3 notification event types the function acts on, as a bucket's notification
/// configuration names them: what the source's notifications must subscribe to. Removals are
/// needed even when deletes are not replicated: a rollback or an undelete is a removal event.
pub const NOTIFICATION_EVENTS: [&str; 5] = [
    "s3:ObjectCreated:*",
    "s3:ObjectRemoved:*",
    "s3:LifecycleExpiration:*",
    "s3:ObjectRestore:Completed",
    "s3:ObjectTagging:*",
];

/// The EventBridge detail types from S3 the function acts on: what its rule matches.
pub const EVENTBRIDGE_DETAIL_TYPES: [&str; 5] = [
    "Object Created",
    "Object Deleted",
    "Object Restore Completed",
    "Object Tags Added",
    "Object Tags Deleted",
];

/// What happened to an object, as far as replication cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectEventKind {
    /// `ObjectCreated:*` or EventBridge `Object Created`: copy the object.
    Created,
    /// `ObjectRestore:Completed` or EventBridge `Object Restore Completed`: an archived object
    /// can be read again, so copy it.
    Restored,
    /// `ObjectRemoved:*`, `LifecycleExpiration:*` or EventBridge `Object Deleted`: copy what is
    /// current again (a rollback, an undelete), else delete the replica, if configured.
    Removed,
    /// `ObjectTagging:Put`, `ObjectTagging:Delete` or EventBridge `Object Tags Added` /
    /// `Object Tags Deleted`: give the replica the source's current tags.
    Tagged,
    /// Any other S3 event (restore started, lifecycle transition, ACL, replication,
    /// Intelligent-Tiering): nothing to replicate.
    Other,
}

impl ObjectEventKind {
    /// The kind of an S3 notification's `eventName`.
    pub fn of_notification(event_name: &str) -> Self {
        if event_name.starts_with("ObjectCreated:") {
            ObjectEventKind::Created
        } else if event_name == "ObjectRestore:Completed" {
            ObjectEventKind::Restored
        } else if event_name.starts_with("ObjectRemoved:")
            || event_name.starts_with("LifecycleExpiration:")
        {
            ObjectEventKind::Removed
        } else if event_name.starts_with("ObjectTagging:") {
            ObjectEventKind::Tagged
        } else {
            ObjectEventKind::Other
        }
    }

    /// The kind of an EventBridge event's `detail-type`.
    pub fn of_eventbridge(detail_type: &str) -> Self {
        match detail_type {
            "Object Created" => ObjectEventKind::Created,
            "Object Restore Completed" => ObjectEventKind::Restored,
            "Object Deleted" => ObjectEventKind::Removed,
            "Object Tags Added" | "Object Tags Deleted" => ObjectEventKind::Tagged,
            _ => ObjectEventKind::Other,
        }
    }
}

/// One object named by an event, with its key already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// Which kind of change the event reports.
    pub kind: ObjectEventKind,
    /// The event's own name (`ObjectCreated:Put`, `Object Created`, ...), for logs and reasons.
    pub event_name: String,
    /// The bucket the event names; checked against the configured source bucket.
    pub bucket: String,
    /// The decoded object key: the first reading to try.
    pub key: String,
    /// Further readings of the key, tried in order when `key` names no object. EventBridge
    /// does not document how it encodes keys (it is read raw, then form-decoded), and Batch
    /// Operations manifests may encode them (percent-decoded, then form-decoded, then raw).
    pub alternate_keys: Vec<String>,
    /// Object size at event time, when the event says.
    pub size: Option<i64>,
    /// The object's ETag at event time, when the event says (unquoted, as events carry it): a
    /// small object is copied on condition of it, without reading its head first.
    pub etag: Option<String>,
    /// The version the event was about; informational, since the current object is copied.
    pub version_id: Option<String>,
    /// S3's ordering token for events on one key.
    pub sequencer: Option<String>,
    /// When S3 reported the event (ISO-8601), for replication lag.
    pub event_time: Option<String>,
    /// The source bucket's region as the event states it (`awsRegion`, EventBridge `region`).
    pub region: Option<String>,
}

impl ObjectEvent {
    /// Every reading of the key, in the order to try them.
    pub fn key_readings(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.key).chain(&self.alternate_keys)
    }
}

/// Why an event, record or message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

/// The contents of one SQS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageContent {
    /// S3's `s3:TestEvent`, sent when a notification is configured: nothing to copy.
    TestEvent,
    /// One or more object events (an S3 notification may carry several records).
    Objects(Vec<Result<ObjectEvent, EventError>>),
}

/// One SQS message and what it decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The SQS message id, returned in `batchItemFailures` when the message must be retried.
    pub message_id: String,
    /// The decoded body, or why it could not be decoded.
    pub content: Result<MessageContent, EventError>,
}

/// An invocation payload, by entry shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// S3 (or SNS-wrapped S3) notification records delivered directly to the function.
    Direct(Vec<Result<ObjectEvent, EventError>>),
    /// A batch from an SQS event source mapping.
    Queue(Vec<QueueMessage>),
    /// A test event delivered directly: acknowledged, nothing copied.
    TestEvent,
}

/// Works out the entry shape of `payload` and decodes it. An unrecognised payload is an error
/// that names what was received (its top-level fields), never the whole payload.
pub fn decode_invocation(payload: &Value) -> Result<Invocation, EventError> {
    let Some(object) = payload.as_object() else {
        return Err(EventError(format!(
            "unrecognised payload: expected a JSON object, received {}",
            json_type(payload)
        )));
    };
    if let Some(records) = object.get("Records") {
        let records = records
            .as_array()
            .ok_or_else(|| EventError("unrecognised payload: Records is not an array".into()))?;
        let first = records
            .first()
            .ok_or_else(|| EventError("unrecognised payload: Records is empty".into()))?;
        return match record_source(first) {
            Some("aws:sqs") => decode_queue(payload).map(Invocation::Queue),
            Some("aws:s3") => Ok(Invocation::Direct(
                records.iter().map(decode_s3_or_sns_record).collect(),
            )),
            Some("aws:sns") => decode_sns_records(records).map(|events| {
                // SNS relays S3's test event when the notification is configured.
                if events.is_empty() {
                    Invocation::TestEvent
                } else {
                    Invocation::Direct(events)
                }
            }),
            other => Err(EventError(format!(
                "unrecognised payload: Records[0] has event source {}",
                other.map_or("(none)".to_string(), |s| format!("{s:?}"))
            ))),
        };
    }
    if is_test_event(payload) {
        return Ok(Invocation::TestEvent);
    }
    if object.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return Ok(Invocation::Direct(vec![decode_eventbridge(payload)]));
    }
    Err(EventError(format!(
        "unrecognised payload: not an S3, SQS, SNS or EventBridge event ({})",
        describe_fields(payload)
    )))
}

fn record_source(record: &Value) -> Option<&str> {
    record
        .get("eventSource")
        .or_else(|| record.get("EventSource"))
        .and_then(Value::as_str)
}

fn decode_queue(payload: &Value) -> Result<Vec<QueueMessage>, EventError> {
    let event: SqsEvent = serde_json::from_value(payload.clone())
        .map_err(|e| EventError(format!("malformed SQS event: {e}")))?;
    Ok(event
        .records
        .into_iter()
        .enumerate()
        .map(|(index, message)| QueueMessage {
            message_id: message
                .message_id
                .unwrap_or_else(|| format!("(record {index} without messageId)")),
            content: message
                .body
                .ok_or_else(|| EventError("SQS message has no body".into()))
                .and_then(|body| decode_message_body(&body)),
        })
        .collect())
}

/// Decodes an SQS message body: an S3 notification, an SNS notification wrapping one, an
/// EventBridge event, or S3's test event.
pub fn decode_message_body(body: &str) -> Result<MessageContent, EventError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| EventError(format!("message body is not JSON: {e}")))?;
    decode_message_value(&value, true)
}

fn decode_message_value(value: &Value, allow_sns: bool) -> Result<MessageContent, EventError> {
    if is_test_event(value) {
        return Ok(MessageContent::TestEvent);
    }
    if allow_sns && value.get("Type").and_then(Value::as_str) == Some("Notification") {
        let inner = value
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| EventError("SNS notification without a Message string".into()))?;
        return decode_sns_message(inner);
    }
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        if records.is_empty() {
            return Err(EventError("S3 notification with no Records".into()));
        }
        return Ok(MessageContent::Objects(
            records.iter().map(decode_s3_record).collect(),
        ));
    }
    if value.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return Ok(MessageContent::Objects(vec![decode_eventbridge(value)]));
    }
    Err(EventError(format!(
        "unrecognised payload: message body is not an S3 notification, SNS notification or EventBridge event ({})",
        describe_fields(value)
    )))
}

/// A record delivered directly in an S3 notification; one naming SNS as its source among them
/// is refused on its own.
fn decode_s3_or_sns_record(record: &Value) -> Result<ObjectEvent, EventError> {
    if record_source(record) == Some("aws:sns") {
        return Err(EventError(
            "an SNS record among S3 notification records".into(),
        ));
    }
    decode_s3_record(record)
}

/// Records SNS delivered directly, each wrapping an S3 notification. A message that is not an
/// S3 notification (another publisher on the topic) makes the payload unrecognised, as any
/// other payload the function does not handle.
fn decode_sns_records(
    records: &[Value],
) -> Result<Vec<Result<ObjectEvent, EventError>>, EventError> {
    let mut events = Vec::new();
    for record in records {
        let message = record
            .get("Sns")
            .and_then(|sns| sns.get("Message"))
            .and_then(Value::as_str);
        let Some(message) = message else {
            events.push(Err(EventError("SNS record without Sns.Message".into())));
            continue;
        };
        match decode_sns_message(message)? {
            MessageContent::TestEvent => {}
            MessageContent::Objects(objects) => events.extend(objects),
        }
    }
    Ok(events)
}

/// The S3 notification (or EventBridge event) an SNS message carries; anything else is an
/// unrecognised payload, named by its top-level fields.
fn decode_sns_message(message: &str) -> Result<MessageContent, EventError> {
    let unrecognised = |what: String| {
        EventError(format!(
            "unrecognised payload: the SNS message is not an S3 notification ({what})"
        ))
    };
    let inner: Value = serde_json::from_str(message)
        .map_err(|_| unrecognised("its Message is not JSON".into()))?;
    if !(is_test_event(&inner)
        || inner.get("Records").is_some()
        || inner.get("source").and_then(Value::as_str) == Some("aws.s3"))
    {
        return Err(unrecognised(describe_fields(&inner)));
    }
    decode_message_value(&inner, false)
}

fn is_test_event(value: &Value) -> bool {
    value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_source: Option<String>,
    aws_region: Option<String>,
    event_name: Option<String>,
    event_time: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: NamedBucket,
    object: S3RecordObject,
}

#[derive(Deserialize)]
struct NamedBucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3RecordObject {
    key: String,
    size: Option<i64>,
    /// Read leniently: an ETag that is not a string is ignored, not a reason to refuse the record.
    #[serde(rename = "eTag")]
    e_tag: Option<Value>,
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn decode_s3_record(record: &Value) -> Result<ObjectEvent, EventError> {
    let record: S3Record = serde_json::from_value(record.clone())
        .map_err(|e| EventError(format!("malformed S3 event record: {e}")))?;
    if record.event_source.as_deref() != Some("aws:s3") {
        return Err(EventError(format!(
            "record event source is {:?}, expected \"aws:s3\"",
            record.event_source.unwrap_or_default()
        )));
    }
    let event_name = record.event_name.unwrap_or_default();
    let kind = ObjectEventKind::of_notification(&event_name);
    let key = decode_event_key(&record.s3.object.key).map_err(|e| {
        EventError(format!(
            "undecodable key in bucket {:?}: {e}",
            record.s3.bucket.name
        ))
    })?;
    Ok(ObjectEvent {
        kind,
        event_name,
        bucket: record.s3.bucket.name,
        key,
        alternate_keys: Vec::new(),
        size: record.s3.object.size,
        etag: event_etag(record.s3.object.e_tag.as_ref()),
        version_id: record.s3.object.version_id,
        sequencer: record.s3.object.sequencer,
        event_time: record.event_time,
        region: record.aws_region.filter(|r| !r.is_empty()),
    })
}

#[derive(Deserialize)]
struct EventBridgeEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    time: Option<String>,
    region: Option<String>,
    detail: EventBridgeDetail,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: NamedBucket,
    object: EventBridgeObject,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    key: String,
    size: Option<i64>,
    etag: Option<Value>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn decode_eventbridge(value: &Value) -> Result<ObjectEvent, EventError> {
    let event: EventBridgeEvent = serde_json::from_value(value.clone())
        .map_err(|e| EventError(format!("malformed EventBridge S3 event: {e}")))?;
    let kind = ObjectEventKind::of_eventbridge(&event.detail_type);
    let raw = event.detail.object.key;
    if raw.is_empty() {
        return Err(EventError("EventBridge event with an empty key".into()));
    }
    // EventBridge delivers keys unencoded (an event captured from AWS carries `:` raw, where a
    // notification sends `%3A`); AWS does not document how a space, `+` or `%` arrive, so the
    // form-decoded reading is kept to try when the raw key names nothing.
    let alternate_keys = match decode_event_key(&raw) {
        Ok(decoded) if decoded != raw => vec![decoded],
        _ => Vec::new(),
    };
    let key = raw;
    Ok(ObjectEvent {
        kind,
        event_name: event.detail_type,
        bucket: event.detail.bucket.name,
        key,
        alternate_keys,
        size: event.detail.object.size,
        etag: event_etag(event.detail.object.etag.as_ref()),
        version_id: event.detail.object.version_id,
        sequencer: event.detail.object.sequencer,
        event_time: event.time,
        region: event.region.filter(|r| !r.is_empty()),
    })
}

/// An event's ETag, when it is a non-empty string.
fn event_etag(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(|etag| etag.trim_matches('"'))
        .filter(|etag| !etag.is_empty())
        .map(str::to_string)
}

/// Names what a JSON value holds without its contents: its top-level fields (at most ten), or
/// its type.
fn describe_fields(value: &Value) -> String {
    match value.as_object() {
        Some(object) => {
            let mut fields: Vec<&str> = object.keys().map(String::as_str).take(10).collect();
            fields.sort_unstable();
            format!("top-level fields: [{}]", fields.join(", "))
        }
        None => format!("received {}", json_type(value)),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
