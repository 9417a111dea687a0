//! Invoking the function itself, asynchronously: how a backfill continues past the deadline and
//! fans out, and how a copy in parts continues in a new invocation.

use serde_json::Value;

/// Where a backfill (or the doctor) may start the function again (its own ARN) and with which client.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfInvoker<'a> {
    /// The Lambda client built at init.
    pub client: Option<&'a aws_sdk_lambda::Client>,
    /// The ARN this invocation was made with (`context.invoked_function_arn`).
    pub function_arn: Option<&'a str>,
    /// This invocation's request id, when under Lambda (a retried asynchronous invocation keeps
    /// it): how a backfill hop tells Lambda's retry of itself from a duplicate delivery.
    pub request_id: Option<&'a str>,
}

impl SelfInvoker<'_> {
    /// Invokes the function asynchronously with `payload`; the error says why it could not.
    pub async fn start(&self, payload: &Value) -> Result<(), String> {
        let (Some(client), Some(arn)) = (self.client, self.function_arn) else {
            return Err("no Lambda client or function ARN in this environment".into());
        };
        start(client, arn, payload).await
    }

    /// The same invoker, owning what it needs (for tasks that outlive the invocation's borrow).
    pub fn owned(&self) -> Invoker {
        Invoker {
            client: self.client.cloned(),
            function_arn: self.function_arn.map(str::to_string),
        }
    }
}

/// A [`SelfInvoker`] that owns its client and ARN: what a copy holds to hand itself off.
#[derive(Debug, Clone, Default)]
pub struct Invoker {
    client: Option<aws_sdk_lambda::Client>,
    function_arn: Option<String>,
}

impl Invoker {
    /// Whether this environment can invoke the function (under Lambda); outside it, the
    /// payload is returned to the caller instead.
    pub fn can_invoke(&self) -> bool {
        self.client.is_some() && self.function_arn.is_some()
    }

    /// Invokes the function asynchronously with `payload`; the error says why it could not.
    pub async fn start(&self, payload: &Value) -> Result<(), String> {
        let (Some(client), Some(arn)) = (&self.client, &self.function_arn) else {
            return Err("no Lambda client or function ARN in this environment".into());
        };
        start(client, arn, payload).await
    }
}

async fn start(client: &aws_sdk_lambda::Client, arn: &str, payload: &Value) -> Result<(), String> {
    client
        .invoke()
        .function_name(arn)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_lambda::error::DisplayErrorContext(e).to_string())
}
