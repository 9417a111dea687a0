//! What the doctor's checks share: the clients, the configuration and the names derived from
//! them ([`Probe`]), and what earlier checks found for later ones ([`Found`]).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use serde_json::Value;

use super::report::IDENTITY_POLICY;
use crate::config::Config;
use crate::copy::Replicator;
use crate::invoke::SelfInvoker;
use crate::ops::policy::DestinationGrant;

/// What the checks share: the clients, the configuration, and the names derived from them.
pub(super) struct Probe<'a> {
    pub(super) config: &'a Config,
    pub(super) source: &'a Client,
    pub(super) destination: &'a Client,
    pub(super) invoker: SelfInvoker<'a>,
    pub(super) grant: DestinationGrant,
    pub(super) source_bucket_arn: String,
    pub(super) destination_bucket_arn: String,
    pub(super) source_prefix: String,
    /// Where a missing write grant goes.
    pub(super) bucket_policy_location: String,
    /// The key the write and delete checks use, under a name of the doctor's own.
    pub(super) probe_key: String,
}

/// What earlier checks found for later ones.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// A source key to read.
    pub(super) sample: Option<String>,
    /// A replica to read.
    pub(super) replica: Option<String>,
    /// Whether B is versioned, once read.
    pub(super) destination_versioned: Option<bool>,
}

impl<'a> Probe<'a> {
    pub(super) fn new(replicator: &'a Replicator, invoker: SelfInvoker<'a>) -> Self {
        let config = replicator.config();
        let clients = replicator.clients();
        let role = config
            .function_role_arn
            .clone()
            .unwrap_or_else(|| "arn:aws:iam::ACCOUNT_A:role/FUNCTION_ROLE".into());
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        Probe {
            config,
            source: clients.source(),
            destination: clients.destination(),
            invoker,
            grant: DestinationGrant::from_config(config, role),
            source_bucket_arn: format!("arn:aws:s3:::{}", config.source_bucket),
            destination_bucket_arn: format!("arn:aws:s3:::{}", config.destination_bucket),
            source_prefix: config.source_prefix.clone().unwrap_or_default(),
            bucket_policy_location: format!(
                "the bucket policy of {} (account B), and {IDENTITY_POLICY}",
                config.destination_bucket
            ),
            probe_key: format!(
                "{}.s3-replicator-doctor/probe-{stamp}",
                config.destination_prefix
            ),
        }
    }

    /// The statement of B's bucket policy numbered `index`, as the generator writes it.
    pub(super) fn bucket_statement(&self, index: usize) -> Value {
        self.grant.bucket_policy()["Statement"][index].clone()
    }

    pub(super) fn probe_arn(&self) -> String {
        format!("{}/{}", self.destination_bucket_arn, self.probe_key)
    }
}
