//! The bucket policy account B attaches to its destination bucket so that the function's role in
//! account A may write replicas there. This is the single source of that document: the
//! `bucket-policy` command prints it, and the tests attach exactly this to the emulator.

use serde_json::{Value, json};

use crate::config::Config;

/// What the role reads of the destination bucket itself: its default encryption, its versioning,
/// its open multipart uploads, its lifecycle rules.
pub const BUCKET_SETTINGS: [&str; 4] = [
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketVersioning",
    "s3:ListBucketMultipartUploads",
    "s3:GetLifecycleConfiguration",
];

/// What the destination bucket policy has to allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationGrant {
    /// The ARN of the function's execution role in account A.
    pub role_arn: String,
    /// The destination bucket in account B.
    pub bucket: String,
    /// `DESTINATION_PREFIX`: the grant covers only keys under it.
    pub prefix: String,
    /// Whether copies carry a canned ACL (`DESTINATION_ACL` other than `none`).
    pub sends_acl: bool,
    /// Whether `REPLICATE_DELETES` is on.
    pub replicate_deletes: bool,
}

impl DestinationGrant {
    /// The grant the function configured by `config` needs, for the role `role_arn`.
    pub fn from_config(config: &Config, role_arn: String) -> Self {
        DestinationGrant {
            role_arn,
            bucket: config.destination_bucket.clone(),
            prefix: config.destination_prefix.clone(),
            sends_acl: config.destination_acl.is_some(),
            replicate_deletes: config.replicate_deletes,
        }
    }

    /// The S3 actions the role needs on the destination objects, for these options.
    pub fn object_actions(&self) -> Vec<&'static str> {
        let mut actions = vec![
            "s3:PutObject",
            "s3:PutObjectTagging",
            "s3:AbortMultipartUpload",
            // A copy in parts continued in a new invocation finds the parts already copied.
            "s3:ListMultipartUploadParts",
            // Reading a replica's head verifies multipart copies and spares repeated ones.
            "s3:GetObject",
            // A tag change in the source that removes every tag.
            "s3:DeleteObjectTagging",
        ];
        if self.sends_acl {
            actions.push("s3:PutObjectAcl");
        }
        if self.replicate_deletes {
            actions.push("s3:DeleteObject");
        }
        actions
    }

    /// The bucket policy document, ready to attach to the destination bucket: writes under the
    /// prefix, listing under it for backfills to find what is missing, reading the bucket's
    /// default encryption (whether its ETags are MD5s) and versioning (the doctor's delete probe
    /// would leave a delete marker in a versioned bucket), and listing its open multipart uploads
    /// and reading its lifecycle rules (the function's uploads left open are found and aborted;
    /// the doctor checks that a rule aborts the rest).
    pub fn bucket_policy(&self) -> Value {
        let partition = self.role_arn.split(':').nth(1).unwrap_or("aws");
        let mut listing = json!({
            "Sid": "AllowS3ReplicatorBackfillListing",
            "Effect": "Allow",
            "Principal": {"AWS": self.role_arn},
            "Action": "s3:ListBucket",
            "Resource": format!("arn:{partition}:s3:::{}", self.bucket),
        });
        if !self.prefix.is_empty() {
            listing["Condition"] =
                json!({"StringLike": {"s3:prefix": format!("{}*", self.prefix)}});
        }
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowS3ReplicatorWrites",
                    "Effect": "Allow",
                    "Principal": {"AWS": self.role_arn},
                    "Action": self.object_actions(),
                    "Resource": format!("arn:{partition}:s3:::{}/{}*", self.bucket, self.prefix),
                },
                listing,
                {
                    "Sid": "AllowS3ReplicatorBucketSettings",
                    "Effect": "Allow",
                    "Principal": {"AWS": self.role_arn},
                    "Action": BUCKET_SETTINGS,
                    "Resource": format!("arn:{partition}:s3:::{}", self.bucket),
                },
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> DestinationGrant {
        DestinationGrant {
            role_arn: "arn:aws:iam::111111111111:role/s3-replicator".into(),
            bucket: "dst-b".into(),
            prefix: "from-a/".into(),
            sends_acl: true,
            replicate_deletes: false,
        }
    }

    #[test]
    fn grants_writes_under_the_prefix_to_the_role_only() {
        let policy = grant().bucket_policy();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(
            statement["Principal"]["AWS"],
            "arn:aws:iam::111111111111:role/s3-replicator"
        );
        assert_eq!(statement["Resource"], "arn:aws:s3:::dst-b/from-a/*");
        assert_eq!(
            statement["Action"],
            json!([
                "s3:PutObject",
                "s3:PutObjectTagging",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
                "s3:GetObject",
                "s3:DeleteObjectTagging",
                "s3:PutObjectAcl"
            ])
        );
        let listing = &policy["Statement"][1];
        assert_eq!(listing["Action"], "s3:ListBucket");
        assert_eq!(listing["Resource"], "arn:aws:s3:::dst-b");
        assert_eq!(listing["Condition"]["StringLike"]["s3:prefix"], "from-a/*");
        let settings = &policy["Statement"][2];
        assert_eq!(
            settings["Action"],
            json!([
                "s3:GetEncryptionConfiguration",
                "s3:GetBucketVersioning",
                "s3:ListBucketMultipartUploads",
                "s3:GetLifecycleConfiguration"
            ])
        );
        assert_eq!(settings["Resource"], "arn:aws:s3:::dst-b");
    }

    #[test]
    fn adds_delete_only_when_deletes_are_replicated_and_acl_only_when_sent() {
        let mut g = grant();
        g.sends_acl = false;
        g.replicate_deletes = true;
        assert_eq!(
            g.object_actions(),
            vec![
                "s3:PutObject",
                "s3:PutObjectTagging",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
                "s3:GetObject",
                "s3:DeleteObjectTagging",
                "s3:DeleteObject"
            ]
        );
    }

    #[test]
    fn follows_the_role_partition() {
        let mut g = grant();
        g.role_arn = "arn:aws-cn:iam::111111111111:role/r".into();
        assert_eq!(
            g.bucket_policy()["Statement"][0]["Resource"],
            "arn:aws-cn:s3:::dst-b/from-a/*"
        );
    }
}
