//! Setup that leaves other people's configuration alone: the function's notification merged into
//! the source bucket's notification configuration, and its statements merged into the
//! destination bucket's policy. Each plan says what it keeps, adds and removes before anything is
//! written, so a dry run shows the change.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    Event, EventBridgeConfiguration, FilterRule, FilterRuleName, LambdaFunctionConfiguration,
    NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    TopicConfiguration,
};
use serde_json::{Value, json};

use crate::decode::NOTIFICATION_EVENTS;
use crate::ops::policy::DestinationGrant;

/// The largest bucket policy S3 accepts, in bytes.
const POLICY_LIMIT: usize = 20 * 1024;

/// Why a setup step cannot be planned or written.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The destination is not an SQS queue, SNS topic or Lambda function ARN.
    #[error(
        "{0:?} is not the ARN of an SQS queue, SNS topic or Lambda function (arn:PARTITION:sqs|sns|lambda:...)"
    )]
    Destination(String),
    /// Another configuration already receives one of the function's event types for keys the
    /// function's prefix also covers: S3 would refuse the write.
    #[error(
        "the bucket's notification {other_id:?} ({other_arn}) already receives {event} for keys that overlap prefix {prefix:?}. \
         S3 refuses two notifications that share an event type with overlapping prefix and suffix filters, \
         so this one cannot be added beside it. Either deploy with TriggerType=EventBridge and run \
         `s3-replicator subscribe --bucket BUCKET --eventbridge` (EventBridge delivers every event to every rule), \
         or point both consumers at one SNS topic: subscribe the topic here and give each consumer its own queue \
         subscribed to the topic"
    )]
    Overlap {
        /// The configuration already there.
        other_id: String,
        /// Where it sends its events.
        other_arn: String,
        /// The event type both would receive.
        event: String,
        /// The function's prefix.
        prefix: String,
    },
    /// The bucket policy cannot be merged.
    #[error("bucket policy: {0}")]
    Policy(String),
    /// S3 refused a read or a write.
    #[error("{operation} on bucket {bucket}: {message}")]
    S3 {
        /// The S3 operation.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// What S3 said.
        message: String,
    },
}

/// What to do with the source bucket's notification configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Add (or replace) the function's notification, `id`, sending the function's event types for
    /// keys under `prefix` to `arn` (the function's queue, a topic or the function itself).
    Notify {
        /// The notification's Id: the one this command adds, replaces and removes.
        id: String,
        /// The destination's ARN.
        arn: String,
        /// `SOURCE_PREFIX`.
        prefix: String,
    },
    /// Remove the notification `id` and nothing else.
    Remove {
        /// The notification's Id.
        id: String,
    },
    /// Turn on the bucket's delivery to EventBridge (the function's rule does the filtering).
    EventBridge,
}

/// A notification configuration change, before it is written.
#[derive(Debug, Clone)]
pub struct NotificationPlan {
    /// The configuration to write.
    pub after: NotificationConfiguration,
    /// Lines saying what is kept, added and removed.
    pub changes: Vec<String>,
    /// Whether the configuration changes at all.
    pub changed: bool,
}

/// One notification of any destination kind, as far as the overlap rule and the plan care.
struct Entry {
    kind: &'static str,
    id: String,
    arn: String,
    events: Vec<String>,
    prefix: String,
    suffix: String,
}

impl Entry {
    fn new(
        kind: &'static str,
        id: Option<&str>,
        arn: &str,
        events: &[Event],
        filter: Option<&NotificationConfigurationFilter>,
    ) -> Self {
        let rules = filter
            .and_then(|f| f.key())
            .map(|k| k.filter_rules())
            .unwrap_or_default();
        let rule = |name: &str| {
            rules
                .iter()
                .find(|r| {
                    r.name()
                        .is_some_and(|n| n.as_str().eq_ignore_ascii_case(name))
                })
                .and_then(|r| r.value())
                .unwrap_or_default()
                .to_string()
        };
        Entry {
            kind,
            id: id.unwrap_or_default().to_string(),
            arn: arn.to_string(),
            events: events.iter().map(|e| e.as_str().to_string()).collect(),
            prefix: rule("prefix"),
            suffix: rule("suffix"),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {:?} -> {} events {} prefix {:?} suffix {:?}",
            self.kind,
            self.id,
            self.arn,
            self.events.join(","),
            self.prefix,
            self.suffix
        )
    }

    /// The first event type both would receive for a key both filters match, if any.
    fn overlap(&self, other: &Entry) -> Option<String> {
        let keys_overlap = (self.prefix.starts_with(&other.prefix)
            || other.prefix.starts_with(&self.prefix))
            && (self.suffix.ends_with(&other.suffix) || other.suffix.ends_with(&self.suffix));
        if !keys_overlap {
            return None;
        }
        self.events.iter().find_map(|mine| {
            other
                .events
                .iter()
                .find(|theirs| events_overlap(mine, theirs))
                .map(|_| mine.clone())
        })
    }
}

/// Whether two event types name a common event: equal, or one is the other's `*` family.
fn events_overlap(a: &str, b: &str) -> bool {
    let family = |e: &str| e.strip_suffix('*').map(str::to_string);
    a == b
        || family(a).is_some_and(|f| b.starts_with(&f))
        || family(b).is_some_and(|f| a.starts_with(&f))
}

fn entries(config: &NotificationConfiguration) -> Vec<Entry> {
    let queues = config
        .queue_configurations()
        .iter()
        .map(|c| Entry::new("queue", c.id(), c.queue_arn(), c.events(), c.filter()));
    let topics = config
        .topic_configurations()
        .iter()
        .map(|c| Entry::new("topic", c.id(), c.topic_arn(), c.events(), c.filter()));
    let functions = config.lambda_function_configurations().iter().map(|c| {
        Entry::new(
            "function",
            c.id(),
            c.lambda_function_arn(),
            c.events(),
            c.filter(),
        )
    });
    queues.chain(topics).chain(functions).collect()
}

/// Plans `subscription` against the bucket's current configuration `before`. Pure: the tests
/// call it on hand-made configurations, [`plan_subscription`] on the bucket's.
pub fn plan_notification(
    before: &NotificationConfiguration,
    subscription: &Subscription,
) -> Result<NotificationPlan, SetupError> {
    let (own_id, added) = match subscription {
        Subscription::EventBridge => return Ok(plan_eventbridge(before)),
        Subscription::Remove { id } => (id.as_str(), None),
        Subscription::Notify { id, arn, prefix } => (id.as_str(), Some((arn, prefix))),
    };
    let (own, others): (Vec<Entry>, Vec<Entry>) =
        entries(before).into_iter().partition(|e| e.id == own_id);
    let mut changes: Vec<String> = others
        .iter()
        .map(|e| format!("keep   {}", e.describe()))
        .collect();
    if before.event_bridge_configuration().is_some() {
        changes.push("keep   EventBridge delivery".into());
    }
    let mut after = without_id(before, own_id);
    let Some((arn, prefix)) = added else {
        changes.extend(own.iter().map(|e| format!("remove {}", e.describe())));
        let changed = !own.is_empty();
        return Ok(NotificationPlan {
            after,
            changes,
            changed,
        });
    };
    let ours = add_notification(&mut after, own_id, arn, prefix)?;
    if let Some((other, event)) = others.iter().find_map(|o| Some((o, ours.overlap(o)?))) {
        return Err(SetupError::Overlap {
            other_id: other.id.clone(),
            other_arn: other.arn.clone(),
            event,
            prefix: prefix.clone(),
        });
    }
    // The same notification is there already: nothing to write.
    if let [present] = own.as_slice()
        && present.describe() == ours.describe()
    {
        changes.push(format!("keep   {}", ours.describe()));
        let after = before.clone();
        return Ok(NotificationPlan {
            after,
            changes,
            changed: false,
        });
    }
    changes.extend(own.iter().map(|e| format!("remove {}", e.describe())));
    changes.push(format!("add    {}", ours.describe()));
    Ok(NotificationPlan {
        after,
        changes,
        changed: true,
    })
}

/// Turns on EventBridge delivery and keeps every notification.
fn plan_eventbridge(before: &NotificationConfiguration) -> NotificationPlan {
    let changed = before.event_bridge_configuration().is_none();
    let mut after = before.clone();
    after.event_bridge_configuration = Some(EventBridgeConfiguration::builder().build());
    let mut changes: Vec<String> = entries(before)
        .iter()
        .map(|e| format!("keep   {}", e.describe()))
        .collect();
    changes.push(if changed {
        "add    EventBridge delivery (every event of the bucket goes to EventBridge)".into()
    } else {
        "keep   EventBridge delivery (already on)".into()
    });
    NotificationPlan {
        after,
        changes,
        changed,
    }
}

fn without_id(config: &NotificationConfiguration, id: &str) -> NotificationConfiguration {
    let not_ours = |other: Option<&str>| other != Some(id);
    let mut kept = config.clone();
    kept.queue_configurations = Some(
        config
            .queue_configurations()
            .iter()
            .filter(|c| not_ours(c.id()))
            .cloned()
            .collect(),
    );
    kept.topic_configurations = Some(
        config
            .topic_configurations()
            .iter()
            .filter(|c| not_ours(c.id()))
            .cloned()
            .collect(),
    );
    kept.lambda_function_configurations = Some(
        config
            .lambda_function_configurations()
            .iter()
            .filter(|c| not_ours(c.id()))
            .cloned()
            .collect(),
    );
    kept
}

/// Adds the function's notification to `config` and returns it as an [`Entry`].
fn add_notification(
    config: &mut NotificationConfiguration,
    id: &str,
    arn: &str,
    prefix: &str,
) -> Result<Entry, SetupError> {
    let events: Vec<Event> = NOTIFICATION_EVENTS
        .iter()
        .map(|e| Event::from(*e))
        .collect();
    let filter = (!prefix.is_empty()).then(|| {
        NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value(prefix)
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let built = |e: aws_sdk_s3::error::BuildError| SetupError::Destination(e.to_string());
    let kind = match arn.split(':').nth(2) {
        Some("sqs") if arn.starts_with("arn:") => {
            let queue = QueueConfiguration::builder()
                .id(id)
                .queue_arn(arn)
                .set_events(Some(events.clone()))
                .set_filter(filter.clone())
                .build()
                .map_err(built)?;
            config
                .queue_configurations
                .get_or_insert_with(Vec::new)
                .push(queue);
            "queue"
        }
        Some("sns") if arn.starts_with("arn:") => {
            let topic = TopicConfiguration::builder()
                .id(id)
                .topic_arn(arn)
                .set_events(Some(events.clone()))
                .set_filter(filter.clone())
                .build()
                .map_err(built)?;
            config
                .topic_configurations
                .get_or_insert_with(Vec::new)
                .push(topic);
            "topic"
        }
        Some("lambda") if arn.starts_with("arn:") => {
            let function = LambdaFunctionConfiguration::builder()
                .id(id)
                .lambda_function_arn(arn)
                .set_events(Some(events.clone()))
                .set_filter(filter.clone())
                .build()
                .map_err(built)?;
            config
                .lambda_function_configurations
                .get_or_insert_with(Vec::new)
                .push(function);
            "function"
        }
        _ => return Err(SetupError::Destination(arn.to_string())),
    };
    Ok(Entry::new(kind, Some(id), arn, &events, filter.as_ref()))
}

fn s3_error<E>(
    operation: &'static str,
    bucket: &str,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E>) -> SetupError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
{
    let bucket = bucket.to_string();
    move |error| {
        let message = match error.as_service_error() {
            Some(service) => format!(
                "{}: {}",
                service.code().unwrap_or("error"),
                service.message().unwrap_or_default()
            ),
            None => format!("{error:?}"),
        };
        SetupError::S3 {
            operation,
            bucket,
            message,
        }
    }
}

/// The bucket's notification configuration, as a document that can be written back.
pub async fn read_notifications(
    client: &Client,
    bucket: &str,
) -> Result<NotificationConfiguration, SetupError> {
    let current = client
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(s3_error("GetBucketNotificationConfiguration", bucket))?;
    Ok(NotificationConfiguration::builder()
        .set_queue_configurations(current.queue_configurations)
        .set_topic_configurations(current.topic_configurations)
        .set_lambda_function_configurations(current.lambda_function_configurations)
        .set_event_bridge_configuration(current.event_bridge_configuration)
        .build())
}

/// Reads the bucket's notification configuration and plans `subscription` against it.
pub async fn plan_subscription(
    client: &Client,
    bucket: &str,
    subscription: &Subscription,
) -> Result<NotificationPlan, SetupError> {
    plan_notification(&read_notifications(client, bucket).await?, subscription)
}

/// Writes a planned notification configuration (nothing when it does not change anything).
pub async fn write_notification(
    client: &Client,
    bucket: &str,
    plan: &NotificationPlan,
) -> Result<(), SetupError> {
    if !plan.changed {
        return Ok(());
    }
    client
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(plan.after.clone())
        .send()
        .await
        .map_err(s3_error("PutBucketNotificationConfiguration", bucket))?;
    Ok(())
}

/// A bucket policy change, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyPlan {
    /// The policy to write, or `None` to delete the bucket policy (nothing else was left).
    pub after: Option<Value>,
    /// Lines saying which statements are kept, replaced, added and removed.
    pub changes: Vec<String>,
    /// Whether the policy changes at all.
    pub changed: bool,
}

/// Merges the function's statements (`ours`, a whole policy document) into `before` by Sid:
/// statements with the function's Sids are replaced (or, with `remove`, removed); every other
/// statement is kept as it is. Pure: [`plan_policy`] calls it on the bucket's policy.
pub fn merge_policy(
    before: Option<&Value>,
    ours: &Value,
    remove: bool,
) -> Result<PolicyPlan, SetupError> {
    let mine = ours["Statement"].as_array().cloned().unwrap_or_default();
    let sid = |s: &Value| s["Sid"].as_str().unwrap_or_default().to_string();
    let own_sids: Vec<String> = mine.iter().map(sid).collect();
    let principal = &mine
        .first()
        .map(|s| s["Principal"].clone())
        .unwrap_or(Value::Null);
    let mut document = before
        .cloned()
        .unwrap_or_else(|| json!({"Version": "2012-10-17"}));
    if !document.is_object() {
        return Err(SetupError::Policy(
            "the bucket's policy is not a JSON object".into(),
        ));
    }
    let existing = match document.get("Statement") {
        None => Vec::new(),
        Some(Value::Array(statements)) => statements.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        Some(_) => {
            return Err(SetupError::Policy(
                "Statement is neither a list nor an object".into(),
            ));
        }
    };
    let mut changes = Vec::new();
    let mut statements = Vec::new();
    let mut present = Vec::new();
    for statement in existing {
        let name = sid(&statement);
        if !own_sids.contains(&name) {
            changes.push(format!("keep    {}", describe_statement(&statement)));
            statements.push(statement);
            continue;
        }
        if statement["Principal"] != *principal {
            return Err(SetupError::Policy(format!(
                "statement {name:?} already grants {} (not this function's role {}): Sids are unique in a policy; \
                 remove that statement or give it another Sid first",
                statement["Principal"], principal
            )));
        }
        let verb = if remove {
            "remove "
        } else if mine.contains(&statement) {
            "keep   "
        } else {
            "replace"
        };
        changes.push(format!("{verb} {}", describe_statement(&statement)));
        present.push(name);
    }
    if !remove {
        for statement in mine.iter().filter(|s| !present.contains(&sid(s))) {
            changes.push(format!("add     {}", describe_statement(statement)));
        }
        statements.extend(mine.iter().cloned());
    }
    let changed = changes.iter().any(|l| !l.starts_with("keep"));
    let after = if statements.is_empty() {
        None
    } else {
        document["Statement"] = Value::Array(statements);
        Some(document)
    };
    if let Some(policy) = &after {
        let size = policy.to_string().len();
        if size > POLICY_LIMIT {
            return Err(SetupError::Policy(format!(
                "the merged policy would be {size} bytes; S3 accepts at most {POLICY_LIMIT}"
            )));
        }
    }
    Ok(PolicyPlan {
        after,
        changes,
        changed,
    })
}

fn describe_statement(statement: &Value) -> String {
    format!(
        "{:?} {} {}",
        statement["Sid"].as_str().unwrap_or("(no Sid)"),
        statement["Effect"].as_str().unwrap_or_default(),
        statement["Action"]
    )
}

/// Reads the destination bucket's policy and plans the merge of `grant`'s statements.
pub async fn plan_policy(
    client: &Client,
    grant: &DestinationGrant,
    remove: bool,
) -> Result<PolicyPlan, SetupError> {
    let bucket = &grant.bucket;
    let before = match client.get_bucket_policy().bucket(bucket).send().await {
        Ok(output) => {
            let text = output.policy().unwrap_or_default();
            Some(serde_json::from_str::<Value>(text).map_err(|e| {
                SetupError::Policy(format!("the bucket's current policy is not JSON: {e}"))
            })?)
        }
        Err(error)
            if error
                .as_service_error()
                .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e))
                == Some("NoSuchBucketPolicy") =>
        {
            None
        }
        Err(error) => return Err(s3_error("GetBucketPolicy", bucket)(error)),
    };
    merge_policy(before.as_ref(), &grant.bucket_policy(), remove)
}

/// Writes a planned bucket policy (nothing when it does not change anything).
pub async fn write_policy(
    client: &Client,
    bucket: &str,
    plan: &PolicyPlan,
) -> Result<(), SetupError> {
    if !plan.changed {
        return Ok(());
    }
    match &plan.after {
        Some(policy) => {
            client
                .put_bucket_policy()
                .bucket(bucket)
                .policy(policy.to_string())
                .send()
                .await
                .map_err(s3_error("PutBucketPolicy", bucket))?;
        }
        None => {
            client
                .delete_bucket_policy()
                .bucket(bucket)
                .send()
                .await
                .map_err(s3_error("DeleteBucketPolicy", bucket))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUE: &str = "arn:aws:sqs:us-east-1:111111111111:replicator";

    fn queue(id: &str, events: &[&str], prefix: &str, suffix: &str) -> QueueConfiguration {
        let mut rules = Vec::new();
        for (name, value) in [
            (FilterRuleName::Prefix, prefix),
            (FilterRuleName::Suffix, suffix),
        ] {
            if !value.is_empty() {
                rules.push(FilterRule::builder().name(name).value(value).build());
            }
        }
        let filter = NotificationConfigurationFilter::builder()
            .key(S3KeyFilter::builder().set_filter_rules(Some(rules)).build())
            .build();
        QueueConfiguration::builder()
            .id(id)
            .queue_arn(format!("arn:aws:sqs:us-east-1:111111111111:{id}"))
            .set_events(Some(events.iter().map(|e| Event::from(*e)).collect()))
            .filter(filter)
            .build()
            .unwrap()
    }

    fn with(queues: Vec<QueueConfiguration>) -> NotificationConfiguration {
        NotificationConfiguration::builder()
            .set_queue_configurations(Some(queues))
            .build()
    }

    fn notify(prefix: &str) -> Subscription {
        Subscription::Notify {
            id: "s3-replicator".into(),
            arn: QUEUE.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn event_types_overlap_through_their_families() {
        assert!(events_overlap("s3:ObjectCreated:*", "s3:ObjectCreated:Put"));
        assert!(events_overlap("s3:ObjectCreated:Put", "s3:ObjectCreated:*"));
        assert!(events_overlap("s3:ObjectTagging:*", "s3:ObjectTagging:*"));
        assert!(!events_overlap("s3:ObjectCreated:*", "s3:ObjectRemoved:*"));
        assert!(!events_overlap(
            "s3:ObjectRestore:Post",
            "s3:ObjectRestore:Completed"
        ));
    }

    #[test]
    fn adds_beside_notifications_for_other_keys_and_keeps_them() {
        let before = with(vec![
            queue("thumbnails", &["s3:ObjectCreated:*"], "images/", ""),
            queue("audit", &["s3:ObjectRestore:Post"], "", ""),
        ]);
        let plan = plan_notification(&before, &notify("data/")).unwrap();
        assert!(plan.changed);
        let ids: Vec<_> = plan
            .after
            .queue_configurations()
            .iter()
            .map(|q| q.id().unwrap())
            .collect();
        assert_eq!(ids, ["thumbnails", "audit", "s3-replicator"]);
        assert_eq!(
            plan.after.queue_configurations()[..2],
            before.queue_configurations()[..]
        );
        let ours = &plan.after.queue_configurations()[2];
        let events: Vec<_> = ours.events().iter().map(|e| e.as_str()).collect();
        assert_eq!(events, NOTIFICATION_EVENTS);
        assert_eq!(
            plan.changes
                .iter()
                .filter(|l| l.starts_with("keep"))
                .count(),
            2
        );
        assert!(
            plan.changes.last().unwrap().starts_with("add"),
            "{:?}",
            plan.changes
        );

        // Planned again over its own result: nothing to change.
        let again = plan_notification(&plan.after, &notify("data/")).unwrap();
        assert!(!again.changed, "{:?}", again.changes);
        // A new prefix replaces the function's notification and nothing else.
        let moved = plan_notification(&plan.after, &notify("data/v2/")).unwrap();
        assert!(moved.changed);
        assert_eq!(moved.after.queue_configurations().len(), 3);
        assert!(moved.changes.iter().any(|l| l.starts_with("remove")));
    }

    #[test]
    fn refuses_what_s3_would_reject_as_overlapping() {
        for (other, prefix) in [
            (queue("all", &["s3:ObjectCreated:Put"], "", ""), "data/"),
            (queue("jpegs", &["s3:ObjectCreated:*"], "", ".jpg"), ""),
            (
                queue("deep", &["s3:ObjectTagging:Put"], "data/deep/", ""),
                "data/",
            ),
            (queue("wide", &["s3:ObjectRemoved:*"], "da", ""), "data/"),
        ] {
            let error = plan_notification(&with(vec![other.clone()]), &notify(prefix)).unwrap_err();
            let SetupError::Overlap { other_id, .. } = &error else {
                panic!("{error}");
            };
            assert_eq!(other_id, other.id().unwrap());
            assert!(error.to_string().contains("EventBridge"), "{error}");
            assert!(error.to_string().contains("SNS"), "{error}");
        }
    }

    #[test]
    fn removes_only_its_own_notification() {
        let before = with(vec![
            queue("thumbnails", &["s3:ObjectCreated:*"], "images/", ""),
            queue("s3-replicator", &["s3:ObjectCreated:*"], "data/", ""),
        ]);
        let remove = Subscription::Remove {
            id: "s3-replicator".into(),
        };
        let plan = plan_notification(&before, &remove).unwrap();
        assert!(plan.changed);
        assert_eq!(
            plan.after.queue_configurations(),
            &before.queue_configurations()[..1]
        );
        let again = plan_notification(&plan.after, &remove).unwrap();
        assert!(!again.changed);
    }

    #[test]
    fn eventbridge_keeps_every_notification() {
        let before = with(vec![queue("thumbnails", &["s3:ObjectCreated:*"], "", "")]);
        let plan = plan_notification(&before, &Subscription::EventBridge).unwrap();
        assert!(plan.changed && plan.after.event_bridge_configuration().is_some());
        assert_eq!(
            plan.after.queue_configurations(),
            before.queue_configurations()
        );
        assert!(
            !plan_notification(&plan.after, &Subscription::EventBridge)
                .unwrap()
                .changed
        );
    }

    #[test]
    fn refuses_a_destination_that_is_not_a_queue_topic_or_function() {
        let wrong = Subscription::Notify {
            id: "x".into(),
            arn: "arn:aws:s3:::bucket".into(),
            prefix: String::new(),
        };
        let error = plan_notification(&with(vec![]), &wrong).unwrap_err();
        assert!(matches!(error, SetupError::Destination(_)), "{error}");
    }

    fn grant() -> DestinationGrant {
        DestinationGrant {
            role_arn: "arn:aws:iam::111111111111:role/replicator".into(),
            bucket: "dst".into(),
            prefix: String::new(),
            sends_acl: false,
            replicate_deletes: false,
        }
    }

    fn foreign() -> Value {
        json!({"Sid": "AnalyticsRead", "Effect": "Allow",
               "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
               "Action": "s3:GetObject", "Resource": "arn:aws:s3:::dst/*"})
    }

    #[test]
    fn merges_by_sid_and_keeps_every_other_statement() {
        let ours = grant().bucket_policy();
        // A policy with a single statement written as an object, as IAM allows.
        let before = json!({"Version": "2012-10-17", "Id": "existing", "Statement": foreign()});
        let plan = merge_policy(Some(&before), &ours, false).unwrap();
        assert!(plan.changed);
        let after = plan.after.clone().unwrap();
        assert_eq!(after["Id"], "existing");
        let statements = after["Statement"].as_array().unwrap();
        assert_eq!(statements[0], foreign());
        assert_eq!(statements[1..], ours["Statement"].as_array().unwrap()[..]);
        assert_eq!(
            plan.changes.iter().filter(|l| l.starts_with("add")).count(),
            3
        );

        // Merged again: nothing changes. With deletes replicated: one statement is replaced.
        assert!(!merge_policy(Some(&after), &ours, false).unwrap().changed);
        let mut deletes = grant();
        deletes.replicate_deletes = true;
        let replaced = merge_policy(Some(&after), &deletes.bucket_policy(), false).unwrap();
        assert!(replaced.changed);
        assert_eq!(
            replaced
                .changes
                .iter()
                .filter(|l| l.starts_with("replace"))
                .count(),
            1
        );
        assert_eq!(
            replaced.after.unwrap()["Statement"]
                .as_array()
                .unwrap()
                .len(),
            4
        );

        // Removed: only the foreign statement is left; with nothing else, the policy goes.
        let removed = merge_policy(Some(&after), &ours, true).unwrap();
        assert_eq!(removed.after.unwrap()["Statement"], json!([foreign()]));
        let alone = merge_policy(Some(&ours), &ours, true).unwrap();
        assert!(alone.changed && alone.after.is_none());
        assert!(merge_policy(None, &ours, false).unwrap().after.is_some());
    }

    #[test]
    fn refuses_a_sid_that_grants_someone_else_and_a_policy_too_large() {
        let ours = grant().bucket_policy();
        let mut taken = ours["Statement"][0].clone();
        taken["Principal"] = json!({"AWS": "arn:aws:iam::444444444444:role/other"});
        let before = json!({"Version": "2012-10-17", "Statement": [taken]});
        let error = merge_policy(Some(&before), &ours, false).unwrap_err();
        assert!(
            error.to_string().contains("AllowS3ReplicatorWrites"),
            "{error}"
        );

        let many: Vec<Value> = (0..200)
            .map(|i| {
                let mut s = foreign();
                s["Sid"] = json!(format!("Reader{i}"));
                s
            })
            .collect();
        let before = json!({"Version": "2012-10-17", "Statement": many});
        let error = merge_policy(Some(&before), &ours, false).unwrap_err();
        assert!(error.to_string().contains("20480"), "{error}");
    }
}
