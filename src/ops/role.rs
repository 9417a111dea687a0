//! The identity policy of the function's execution role, for a deployment without the template
//! (cargo-lambda): the same statements, by the same `Sid`s, as `template.yaml`'s `ReplicatorRole`
//! grants for the same settings. The `role-policy` command prints it; a test renders the template
//! and compares.

use serde_json::{Value, json};

use super::policy::{BUCKET_SETTINGS, DestinationGrant};
use crate::config::Config;

/// What the role is granted beyond the buckets the configuration names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleGrant {
    /// The function's own ARN: backfills continue and fan out by invoking it.
    pub function_arn: String,
    /// The queue the function consumes S3 notifications from, if any.
    pub queue_arn: Option<String>,
    /// Where failed asynchronous invocations go, if anywhere.
    pub dead_letter_arn: Option<String>,
    /// The KMS key the source's objects are encrypted with, if any.
    pub source_kms_key_arn: Option<String>,
}

/// A statement as the template writes it: one action as a string, several as a list.
fn statement(sid: &str, actions: &[&str], resource: String) -> Value {
    let action = match actions {
        [one] => json!(one),
        several => json!(several),
    };
    json!({"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource})
}

/// `(partition, region, account)` of an ARN such as the function's.
fn arn_parts(arn: &str) -> (&str, &str, &str) {
    let mut parts = arn.split(':').skip(1);
    let partition = parts.next().unwrap_or("aws");
    let _service = parts.next();
    let region = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or_default();
    (partition, region, account)
}

impl RoleGrant {
    /// The identity policy for `config`: reading the source, writing replicas, listing both
    /// buckets and reading their settings, invoking the function itself, writing its logs to
    /// `/aws/lambda/<function name>`, and the queue, dead-letter queue and KMS keys given.
    pub fn identity_policy(&self, config: &Config) -> Value {
        let (partition, region, account) = arn_parts(&self.function_arn);
        let mut statements = bucket_statements(config, partition);
        let function_name = self.function_arn.rsplit(':').next().unwrap_or_default();
        statements.push(statement(
            "InvokeSelfForBackfill",
            &["lambda:InvokeFunction"],
            self.function_arn.clone(),
        ));
        statements.push(statement(
            "WriteLogs",
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            format!(
                "arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/{function_name}:*"
            ),
        ));
        if let Some(queue) = &self.dead_letter_arn {
            statements.push(statement(
                "SendFailedInvocationsToDeadLetterQueue",
                &["sqs:SendMessage"],
                queue.clone(),
            ));
        }
        if let Some(queue) = &self.queue_arn {
            let actions = [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ];
            statements.push(statement("ConsumeQueue", &actions, queue.clone()));
        }
        statements.extend(self.kms_statements(config, region));
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    /// Encrypting replicas with the destination key and reading the source's, only through S3.
    fn kms_statements(&self, config: &Config, region: &str) -> Vec<Value> {
        let through_s3 = |region: &str| json!({"StringEquals": {"kms:ViaService": format!("s3.{region}.amazonaws.com")}});
        let mut statements = Vec::new();
        if let Some(key) = &config.destination_kms_key_id {
            let destination_region = config.destination_region.as_deref().unwrap_or(region);
            let mut encrypt = statement(
                "EncryptReplicas",
                &["kms:GenerateDataKey", "kms:Decrypt"],
                key.clone(),
            );
            encrypt["Condition"] = through_s3(destination_region);
            statements.push(encrypt);
        }
        if let Some(key) = &self.source_kms_key_arn {
            let mut decrypt = statement("DecryptSourceObjects", &["kms:Decrypt"], key.clone());
            decrypt["Condition"] = through_s3(region);
            statements.push(decrypt);
        }
        statements
    }
}

/// Reading the source, writing the replicas, and listing and reading both buckets' settings.
fn bucket_statements(config: &Config, partition: &str) -> Vec<Value> {
    let s3 = |path: &str| format!("arn:{partition}:s3:::{path}");
    let source_prefix = config.source_prefix.as_deref().unwrap_or_default();
    // The same object actions B's bucket policy grants the role.
    let destination = DestinationGrant::from_config(config, String::new());
    let source_settings = [
        "s3:ListBucket",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketVersioning",
    ];
    let destination_settings: Vec<&str> = std::iter::once("s3:ListBucket")
        .chain(BUCKET_SETTINGS)
        .collect();
    let read = [
        "s3:GetObject",
        "s3:GetObjectTagging",
        "s3:GetObjectVersion",
        "s3:GetObjectVersionTagging",
    ];
    vec![
        statement(
            "ReadSourceObjects",
            &read,
            s3(&format!("{}/{source_prefix}*", config.source_bucket)),
        ),
        statement(
            "ListSourceBucket",
            &source_settings,
            s3(&config.source_bucket),
        ),
        statement(
            "WriteReplicas",
            &destination.object_actions(),
            s3(&format!("{}/{}*", destination.bucket, destination.prefix)),
        ),
        statement(
            "ListDestinationBucket",
            &destination_settings,
            s3(&config.destination_bucket),
        ),
    ]
}

/// The trust policy that lets Lambda run the function with the role.
pub fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_function_s_own_log_group_and_adds_only_what_is_given() {
        let config = Config::from_lookup(|name| {
            [("SOURCE_BUCKET", "src-a"), ("DESTINATION_BUCKET", "dst-b")]
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let grant = RoleGrant {
            function_arn: "arn:aws:lambda:eu-west-1:111111111111:function:replicator".into(),
            ..Default::default()
        };
        let policy = grant.identity_policy(&config);
        let sids: Vec<&str> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert_eq!(
            sids,
            [
                "ReadSourceObjects",
                "ListSourceBucket",
                "WriteReplicas",
                "ListDestinationBucket",
                "InvokeSelfForBackfill",
                "WriteLogs"
            ]
        );
        assert_eq!(
            policy["Statement"][5]["Resource"],
            "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/lambda/replicator:*"
        );
        assert_eq!(policy["Statement"][0]["Resource"], "arn:aws:s3:::src-a/*");
    }
}
