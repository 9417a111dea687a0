//! Commands the binary runs outside Lambda, so account B's owner can produce what it needs
//! without deploying anything.

use crate::entry::runtime::replicator_from_env;
use crate::invoke::SelfInvoker;
use crate::ops::doctor::run_doctor;
use crate::ops::policy::DestinationGrant;

const USAGE: &str = "usage: s3-replicator bucket-policy --role-arn ARN --bucket BUCKET [--prefix PREFIX] [--no-acl] [--replicate-deletes]
       s3-replicator doctor [--function-arn ARN]   (configuration from the same environment variables as the function;
                                                    with the ARN, also checks that the role may invoke the function)";

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
#[error("{0}\n{USAGE}")]
pub struct UsageError(String);

/// Runs the command named by `args` (without the program name), printing to standard output.
pub async fn run(args: &[String]) -> Result<(), UsageError> {
    let (command, rest) = args
        .split_first()
        .ok_or_else(|| UsageError("no command given".into()))?;
    match command.as_str() {
        "bucket-policy" => {
            let grant = parse_grant(rest)?;
            let text = serde_json::to_string_pretty(&grant.bucket_policy())
                .map_err(|e| UsageError(e.to_string()))?;
            println!("{text}");
            Ok(())
        }
        "doctor" => {
            let function_arn = match rest {
                [] => None,
                [flag, arn] if flag == "--function-arn" => Some(arn.as_str()),
                other => return Err(UsageError(format!("unexpected arguments {other:?}"))),
            };
            let (replicator, sdk_config) = replicator_from_env()
                .await
                .map_err(|e| UsageError(format!("configuration: {e}")))?;
            let lambda = aws_sdk_lambda::Client::new(&sdk_config);
            let invoker = SelfInvoker {
                client: Some(&lambda),
                function_arn,
            };
            let report = run_doctor(&replicator, invoker).await;
            print!("{}", report.to_table());
            if report.healthy {
                Ok(())
            } else {
                Err(UsageError("some permissions are missing".into()))
            }
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(UsageError(format!("unknown command {other:?}"))),
    }
}

/// Reads the `bucket-policy` flags.
pub fn parse_grant(args: &[String]) -> Result<DestinationGrant, UsageError> {
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
                .ok_or_else(|| UsageError(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--role-arn" => grant.role_arn = value()?,
            "--bucket" => grant.bucket = value()?,
            "--prefix" => grant.prefix = value()?,
            "--no-acl" => grant.sends_acl = false,
            "--replicate-deletes" => grant.replicate_deletes = true,
            other => return Err(UsageError(format!("unknown flag {other:?}"))),
        }
    }
    if !grant.role_arn.starts_with("arn:") || !grant.role_arn.contains(":role/") {
        return Err(UsageError(
            "--role-arn must be the function's role ARN (arn:aws:iam::ACCOUNT:role/NAME)".into(),
        ));
    }
    if grant.bucket.is_empty() {
        return Err(UsageError("--bucket is required".into()));
    }
    if let Some(problem) = crate::config::prefix_problem(&grant.prefix) {
        return Err(UsageError(format!("--prefix {:?} {problem}", grant.prefix)));
    }
    Ok(grant)
}
