//! The permission doctor: exercises every permission the configuration needs with harmless calls
//! and, for each that fails, names the statement that is missing and where it goes.
//!
//! Nothing is left behind: the write to B is a multipart upload that is created (with the
//! configured ACL, tags, storage class and KMS key) and aborted; the delete checks delete a key
//! that does not exist (and its tags), and not at all in a versioned B, where that would leave a
//! delete marker; the self-invocation check is a Lambda `DryRun`, which runs nothing.

mod checks;
mod cleanup;
mod probe;
mod report;
mod versions;

use crate::copy::Replicator;
use crate::invoke::SelfInvoker;
use checks::CHECKS;
use probe::{Found, Probe};
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
