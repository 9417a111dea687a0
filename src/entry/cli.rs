//! Commands the binary runs outside Lambda, so account B's owner can produce what it needs
//! without deploying anything.

use crate::entry::runtime::replicator_from_env;
use crate::invoke::SelfInvoker;
use crate::ops::doctor::run_doctor;
use crate::ops::policy::DestinationGrant;
use crate::ops::setup::{
    Subscription, plan_policy, plan_subscription, write_notification, write_policy,
};
use crate::ops::uploads::{DEFAULT_OLDER_THAN_HOURS, UploadsRequest, older_than, stale_uploads};

/// The Id of the function's notification in the source bucket, unless `--id` says otherwise.
const NOTIFICATION_ID: &str = "s3-replicator";

const USAGE: &str = "usage: s3-replicator bucket-policy --role-arn ARN --bucket BUCKET [--prefix PREFIX] [--no-acl] [--replicate-deletes]
       s3-replicator merge-policy --role-arn ARN --bucket BUCKET [--prefix PREFIX] [--no-acl] [--replicate-deletes] [--remove] [--dry-run]
                                                   (account B: merges the function's statements into the bucket's policy by Sid)
       s3-replicator subscribe --bucket BUCKET --destination-arn QUEUE_TOPIC_OR_FUNCTION_ARN [--prefix PREFIX] [--id ID] [--dry-run]
       s3-replicator subscribe --bucket BUCKET --eventbridge [--dry-run]
       s3-replicator unsubscribe --bucket BUCKET [--id ID] [--dry-run]
                                                   (account A: adds or removes the function's notification, keeping the others)
       s3-replicator role-policy --function-arn ARN [--queue-arn ARN] [--dead-letter-arn ARN] [--source-kms-key-arn ARN]
       s3-replicator role-policy --trust           (the execution role's identity policy, or its trust policy, for a
                                                    deployment without template.yaml; settings from the function's variables)
       s3-replicator doctor [--function-arn ARN]   (configuration from the same environment variables as the function;
                                                    with the ARN, also checks that the role may invoke the function)
       s3-replicator uploads [--older-than-hours N] [--abort]
                                                   (the multipart uploads the function's role left open in B under the
                                                    prefix, started N hours ago or more (default 24); aborts them if asked)";

/// A command line that cannot be run (exit status 2), or a command that ran and failed
/// (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong: the message and the usage.
    #[error("{0}\n{USAGE}")]
    Usage(String),
    /// The command failed: what went wrong.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process's exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

fn failed(error: impl std::fmt::Display) -> CliError {
    CliError::Failed(error.to_string())
}

/// Runs the command named by `args` (without the program name), printing to standard output.
pub async fn run(args: &[String]) -> Result<(), CliError> {
    let (command, rest) = args
        .split_first()
        .ok_or_else(|| usage("no command given"))?;
    match command.as_str() {
        "bucket-policy" => {
            let grant = parse_grant(rest)?;
            let text = serde_json::to_string_pretty(&grant.bucket_policy())
                .map_err(|e| usage(e.to_string()))?;
            println!("{text}");
            Ok(())
        }
        "doctor" => doctor(rest).await,
        "uploads" => uploads(rest).await,
        "merge-policy" => {
            let flags = Flags::parse(rest, &["--dry-run", "--remove"])?;
            let grant = parse_grant(&flags.rest)?;
            let client = setup_client().await;
            let plan = plan_policy(&client, &grant, flags.has("--remove"))
                .await
                .map_err(failed)?;
            for line in &plan.changes {
                println!("{line}");
            }
            if let Some(policy) = &plan.after {
                let text = serde_json::to_string_pretty(policy).unwrap_or_default();
                println!("{text}");
            }
            finish(
                &flags,
                plan.changed,
                write_policy(&client, &grant.bucket, &plan),
            )
            .await
        }
        "subscribe" | "unsubscribe" => {
            let flags = Flags::parse(rest, &["--dry-run", "--eventbridge"])?;
            let (bucket, subscription) = parse_subscription(command, &flags)?;
            let client = setup_client().await;
            let plan = plan_subscription(&client, &bucket, &subscription)
                .await
                .map_err(failed)?;
            for line in &plan.changes {
                println!("{line}");
            }
            finish(
                &flags,
                plan.changed,
                write_notification(&client, &bucket, &plan),
            )
            .await
        }
        "role-policy" => role_policy(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

/// Flags of a setup command: the switches it knows, and the rest (flags with values).
struct Flags {
    switches: Vec<String>,
    rest: Vec<String>,
}

impl Flags {
    fn parse(args: &[String], switches: &[&str]) -> Result<Self, CliError> {
        let (on, rest): (Vec<&String>, Vec<&String>) =
            args.iter().partition(|a| switches.contains(&a.as_str()));
        Ok(Flags {
            switches: on.into_iter().cloned().collect(),
            rest: rest.into_iter().cloned().collect(),
        })
    }

    fn has(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    /// The values of the flags with values, by name; unknown flags are refused.
    fn values(&self, known: &[&str]) -> Result<Vec<(String, String)>, CliError> {
        let mut values = Vec::new();
        let mut args = self.rest.iter();
        while let Some(flag) = args.next() {
            if !known.contains(&flag.as_str()) {
                return Err(usage(format!("unknown flag {flag:?}")));
            }
            let value = args
                .next()
                .ok_or_else(|| usage(format!("{flag} needs a value")))?;
            values.push((flag.clone(), value.clone()));
        }
        Ok(values)
    }
}

/// Runs the permission doctor with the function's configuration from the environment.
async fn doctor(rest: &[String]) -> Result<(), CliError> {
    let function_arn = match rest {
        [] => None,
        [flag, arn] if flag == "--function-arn" => Some(arn.as_str()),
        other => return Err(usage(format!("unexpected arguments {other:?}"))),
    };
    let (replicator, sdk_config) = replicator_from_env()
        .await
        .map_err(|e| failed(format!("configuration: {e}")))?;
    let lambda = aws_sdk_lambda::Client::new(&sdk_config);
    let invoker = SelfInvoker {
        client: Some(&lambda),
        function_arn,
        request_id: None,
    };
    let report = run_doctor(&replicator, invoker).await;
    print!("{}", report.to_table());
    if report.healthy {
        Ok(())
    } else {
        Err(failed("some permissions are missing"))
    }
}

/// Lists (and aborts, with `--abort`) the function's uploads left open in B, as JSON.
async fn uploads(rest: &[String]) -> Result<(), CliError> {
    let flags = Flags::parse(rest, &["--abort"])?;
    let mut hours = DEFAULT_OLDER_THAN_HOURS;
    for (_, value) in flags.values(&["--older-than-hours"])? {
        hours = value
            .parse()
            .map_err(|_| usage(format!("--older-than-hours: not a number: {value:?}")))?;
    }
    let request = UploadsRequest {
        older_than: older_than(hours).map_err(usage)?,
        abort: flags.has("--abort"),
    };
    let (replicator, _) = replicator_from_env()
        .await
        .map_err(|e| failed(format!("configuration: {e}")))?;
    let report = stale_uploads(&replicator, request).await.map_err(failed)?;
    let text = serde_json::to_string_pretty(&report).map_err(failed)?;
    println!("{text}");
    report
        .abort_failure()
        .map_or(Ok(()), |failure| Err(failed(failure)))
}

/// Prints the execution role's identity policy (settings from the environment) or trust policy.
fn role_policy(args: &[String]) -> Result<(), CliError> {
    let flags = Flags::parse(args, &["--trust"])?;
    let text = if flags.has("--trust") {
        serde_json::to_string_pretty(&crate::ops::role::trust_policy())
    } else {
        let grant = parse_role_grant(&flags)?;
        let config = crate::config::Config::from_env().map_err(failed)?;
        serde_json::to_string_pretty(&grant.identity_policy(&config))
    };
    println!("{}", text.map_err(failed)?);
    Ok(())
}

/// The value given to `flag` among `values` (as [`Flags::values`] reads them).
fn value_of(values: &[(String, String)], flag: &str) -> Option<String> {
    values
        .iter()
        .find(|(name, _)| name == flag)
        .map(|(_, value)| value.clone())
}

/// Reads the `role-policy` flags.
fn parse_role_grant(flags: &Flags) -> Result<crate::ops::role::RoleGrant, CliError> {
    let values = flags.values(&[
        "--function-arn",
        "--queue-arn",
        "--dead-letter-arn",
        "--source-kms-key-arn",
    ])?;
    let value = |name: &str| value_of(&values, name);
    let function_arn = value("--function-arn")
        .filter(|arn| arn.starts_with("arn:") && arn.contains(":function:"))
        .ok_or_else(|| {
            usage("--function-arn must be the function's ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)")
        })?;
    Ok(crate::ops::role::RoleGrant {
        function_arn,
        queue_arn: value("--queue-arn"),
        dead_letter_arn: value("--dead-letter-arn"),
        source_kms_key_arn: value("--source-kms-key-arn"),
    })
}

/// Reads the `subscribe` / `unsubscribe` flags.
fn parse_subscription(command: &str, flags: &Flags) -> Result<(String, Subscription), CliError> {
    let known: &[&str] = match command {
        "subscribe" => &["--bucket", "--destination-arn", "--prefix", "--id"],
        _ => &["--bucket", "--id"],
    };
    let values = flags.values(known)?;
    let value = |name: &str| value_of(&values, name);
    let bucket = value("--bucket").ok_or_else(|| usage("--bucket is required"))?;
    let id = value("--id").unwrap_or_else(|| NOTIFICATION_ID.to_string());
    let subscription = match (
        command,
        flags.has("--eventbridge"),
        value("--destination-arn"),
    ) {
        ("unsubscribe", _, _) => Subscription::Remove { id },
        (_, true, None) => Subscription::EventBridge,
        (_, false, Some(arn)) => {
            let prefix = value("--prefix").unwrap_or_default();
            if let Some(problem) = crate::config::prefix_problem(&prefix) {
                return Err(usage(format!("--prefix {prefix:?} {problem}")));
            }
            Subscription::Notify { id, arn, prefix }
        }
        _ => {
            return Err(usage(
                "subscribe needs either --destination-arn or --eventbridge",
            ));
        }
    };
    Ok((bucket, subscription))
}

/// An S3 client for the setup commands: the standard AWS environment (credentials, region,
/// endpoint), with path-style addressing when `S3_FORCE_PATH_STYLE` is true.
async fn setup_client() -> aws_sdk_s3::Client {
    let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let path_style = std::env::var("S3_FORCE_PATH_STYLE").is_ok_and(|v| v == "true");
    let config = aws_sdk_s3::config::Builder::from(&sdk_config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Writes the planned change unless this is a dry run or nothing changes, and says which.
async fn finish(
    flags: &Flags,
    changed: bool,
    write: impl std::future::Future<Output = Result<(), crate::ops::setup::SetupError>>,
) -> Result<(), CliError> {
    if !changed {
        println!("nothing to change");
    } else if flags.has("--dry-run") {
        println!("dry run: nothing written");
    } else {
        write.await.map_err(failed)?;
        println!("written");
    }
    Ok(())
}

/// Reads the `bucket-policy` flags.
pub fn parse_grant(args: &[String]) -> Result<DestinationGrant, CliError> {
    let mut grant = DestinationGrant {
        role_arn: String::new(),
        bucket: String::new(),
        prefix: String::new(),
        sends_acl: true,
        replicate_deletes: false,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--role-arn" => grant.role_arn = value()?,
            "--bucket" => grant.bucket = value()?,
            "--prefix" => grant.prefix = value()?,
            "--no-acl" => grant.sends_acl = false,
            "--replicate-deletes" => grant.replicate_deletes = true,
            other => return Err(usage(format!("unknown flag {other:?}"))),
        }
    }
    if !grant.role_arn.starts_with("arn:") || !grant.role_arn.contains(":role/") {
        return Err(usage(
            "--role-arn must be the function's role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
        ));
    }
    if grant.bucket.is_empty() {
        return Err(usage("--bucket is required"));
    }
    if let Some(problem) = crate::config::prefix_problem(&grant.prefix) {
        return Err(usage(format!("--prefix {:?} {problem}", grant.prefix)));
    }
    Ok(grant)
}
