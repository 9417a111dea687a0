//! The permission doctor: exercises every permission the configuration needs with harmless calls
//! and, for each that fails, names the statement that is missing and where it goes.
//!
//! Nothing is left behind: the write to B is a multipart upload that is created (with the
//! configured ACL, tags, storage class and KMS key) and aborted; the delete check deletes a key
//! that does not exist; the self-invocation check is a Lambda `DryRun`, which runs nothing.

mod checks;
mod report;

use crate::copy::Replicator;
use crate::invoke::SelfInvoker;
use checks::{CHECKS, Found, Probe};
pub use report::{Check, DoctorReport, Status};

/// Runs every check; `invoker` is the function's own ARN and Lambda client when it runs as the
/// function (without them, the self-invocation check is skipped).
pub async fn run_doctor(replicator: &Replicator, invoker: SelfInvoker<'_>) -> DoctorReport {
    let probe = Probe::new(replicator, invoker);
    let mut found = Found::default();
    let mut checks = Vec::new();
    for check in CHECKS {
        checks.extend(check.run(&probe, &mut found).await);
    }
    let healthy = checks.iter().all(|c| c.status != Status::Fail);
    DoctorReport { healthy, checks }
}
