//! The doctor's findings: one check each, and the report they make.

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{FailureClass, S3Failure, classify};
use crate::keys::decode_listed_key;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The permission works.
    Pass,
    /// The permission is missing; `fix` says what to add where.
    Fail,
    /// Could not be checked (for example, no object to read); not a failure.
    Skip,
    /// A setting worth knowing, read where permitted.
    Info,
    /// A setting that costs money or risks loss, with what to change; not a failure.
    Warn,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it ended.
    pub status: Status,
    /// The S3 actions exercised.
    pub actions: Vec<&'static str>,
    /// The bucket or object ARN they were exercised on.
    pub resource: String,
    /// S3's error code, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What was found, or why the check was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// On failure: where the missing statement goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_location: Option<String>,
    /// On failure: the statement to add there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_statement: Option<Value>,
}

/// The doctor's findings.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// Whether no check failed.
    pub healthy: bool,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// The report as a table for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
                Status::Info => "INFO",
                Status::Warn => "WARN",
            };
            out.push_str(&format!(
                "{status}  {:<28} {} on {}",
                check.name,
                check.actions.join(", "),
                check.resource
            ));
            if let Some(code) = &check.error_code {
                out.push_str(&format!(" ({code})"));
            }
            if let Some(detail) = &check.detail {
                out.push_str(&format!(": {detail}"));
            }
            out.push('\n');
            if let (Some(location), Some(statement)) = (&check.fix_location, &check.fix_statement) {
                out.push_str(&format!("      add to {location}:\n      {statement}\n"));
            }
        }
        out.push_str(if self.healthy {
            "healthy: every permission the configuration needs works\n"
        } else {
            "NOT healthy: add the statements above\n"
        });
        out
    }
}

/// Where the role's own grants go.
pub(super) const IDENTITY_POLICY: &str = "the function role's identity policy (account A)";

/// The first key of a listing (asked for `EncodingType=url`) that succeeded.
pub(super) fn first_key<E>(
    listing: &Result<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output, E>,
) -> Option<String> {
    listing
        .as_ref()
        .ok()
        .and_then(|page| page.contents().first())
        .and_then(|object| object.key())
        .map(decode_listed_key)
}

/// A check that could not be made, and why.
pub(super) fn skipped(
    name: &'static str,
    actions: Vec<&'static str>,
    resource: String,
    why: &str,
) -> Check {
    Check {
        name,
        status: Status::Skip,
        actions,
        resource,
        error_code: None,
        detail: Some(why.to_string()),
        fix_location: None,
        fix_statement: None,
    }
}

/// An identity-policy statement allowing `actions` on `resource`.
pub(super) fn identity_statement(actions: &[&str], resource: &str) -> Value {
    json!({"Effect": "Allow", "Action": actions, "Resource": resource})
}

/// A check that ran: passed with `result`'s detail, or failed with the statement to add.
pub(super) fn outcome(
    name: &'static str,
    actions: Vec<&'static str>,
    resource: String,
    result: Result<Option<String>, S3Failure>,
    location: &str,
    statement: Value,
) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            status: Status::Pass,
            actions,
            resource,
            error_code: None,
            detail,
            fix_location: None,
            fix_statement: None,
        },
        Err(failure) => {
            let denied = failure.class == FailureClass::AccessDenied;
            // Where S3 says which kind of policy lacks the grant, name only that one.
            let (location, statement) = if failure.message.contains("no identity-based policy") {
                let mut statement = statement;
                if let Some(fields) = statement.as_object_mut() {
                    fields.remove("Principal");
                }
                (IDENTITY_POLICY, statement)
            } else {
                (location, statement)
            };
            Check {
                name,
                status: Status::Fail,
                actions,
                resource,
                error_code: Some(failure.code.clone()),
                detail: Some(failure.message.clone()),
                fix_location: denied.then(|| location.to_string()),
                fix_statement: denied.then_some(statement),
            }
        }
    }
}

/// A setting read for information, never a failure.
pub(super) fn info<E>(
    name: &'static str,
    action: &'static str,
    resource: String,
    result: Result<String, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> Check
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = match result {
        Ok(found) => found,
        Err(err) => format!("not readable ({}); not needed", classify(err).code),
    };
    Check {
        name,
        status: Status::Info,
        actions: vec![action],
        resource,
        error_code: None,
        detail: Some(detail),
        fix_location: None,
        fix_statement: None,
    }
}
