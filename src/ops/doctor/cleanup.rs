//! The checks that keep B free of forgotten parts: the function may list B's open multipart
//! uploads (the `uploads` command finds its own), and B has a lifecycle rule that aborts the
//! uploads nobody completes.

use aws_sdk_s3::types::{ExpirationStatus, LifecycleRule};

use super::probe::Probe;
use super::report::{Check, Status, outcome};
use crate::error::classify;

/// The lifecycle rule to add when B has none that covers the prefix, as `aws s3api
/// put-bucket-lifecycle-configuration` takes it (merged with B's rules, which it replaces).
const LIFECYCLE_RULE: &str = r#"{"ID": "abort-incomplete-multipart-uploads", "Status": "Enabled", "Filter": {"Prefix": "PREFIX"}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}"#;

/// Listing B's open uploads under the prefix (one is enough).
pub(super) async fn list_destination_uploads(probe: &Probe<'_>) -> Check {
    let config = probe.config;
    let listed = probe
        .destination
        .list_multipart_uploads()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .prefix(&config.destination_prefix)
        .max_uploads(1)
        .send()
        .await
        .map(|_| None)
        .map_err(classify);
    outcome(
        "list destination uploads",
        vec!["s3:ListBucketMultipartUploads"],
        probe.destination_bucket_arn.clone(),
        listed,
        &probe.bucket_policy_location,
        probe.bucket_statement(2),
    )
}

/// Reading B's lifecycle rules: a warning when none aborts incomplete uploads under the prefix
/// (their parts would be billed for as long as nobody aborts them).
pub(super) async fn destination_lifecycle(probe: &Probe<'_>) -> Check {
    let config = probe.config;
    let read = probe
        .destination
        .get_bucket_lifecycle_configuration()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await;
    let rules = match read {
        Ok(output) => Ok(output.rules().to_vec()),
        Err(err) => {
            let failure = classify(err);
            if failure.code == "NoSuchLifecycleConfiguration" {
                Ok(Vec::new())
            } else {
                Err(failure)
            }
        }
    };
    let covering = rules
        .as_ref()
        .ok()
        .and_then(|rules| abort_rule_days(rules, &config.destination_prefix));
    let mut check = outcome(
        "destination lifecycle",
        vec!["s3:GetLifecycleConfiguration"],
        probe.destination_bucket_arn.clone(),
        rules.map(|_| {
            covering
                .map(|days| format!("incomplete multipart uploads are aborted after {days} day(s)"))
        }),
        &probe.bucket_policy_location,
        probe.bucket_statement(2),
    );
    if check.status == Status::Pass && covering.is_none() {
        check.status = Status::Warn;
        check.detail = Some(format!(
            "no enabled lifecycle rule of {} aborts incomplete multipart uploads under {:?}: the \
             parts of a copy stopped in the middle stay billed until `s3-replicator uploads \
             --abort` removes them. Add (account B): {}",
            config.destination_bucket,
            config.destination_prefix,
            LIFECYCLE_RULE.replace("PREFIX", &config.destination_prefix)
        ));
    }
    check
}

/// The days after which an enabled rule aborts incomplete uploads under `prefix`, if one does
/// (the soonest, if several).
fn abort_rule_days(rules: &[LifecycleRule], prefix: &str) -> Option<i32> {
    rules
        .iter()
        .filter(|rule| *rule.status() == ExpirationStatus::Enabled)
        .filter(|rule| covers(rule, prefix))
        .filter_map(|rule| rule.abort_incomplete_multipart_upload())
        .filter_map(|abort| abort.days_after_initiation())
        .min()
}

/// Whether a rule's filter takes in every key under `prefix`: no filter, or a key prefix that
/// `prefix` starts with, and no tag or size condition (S3 applies neither to uploads).
#[allow(deprecated)]
fn covers(rule: &LifecycleRule, prefix: &str) -> bool {
    let Some(filter) = rule.filter() else {
        return prefix.starts_with(rule.prefix().unwrap_or_default());
    };
    let (rule_prefix, conditions) = match filter.and() {
        Some(and) => (
            and.prefix(),
            !and.tags().is_empty()
                || and.object_size_greater_than().is_some()
                || and.object_size_less_than().is_some(),
        ),
        None => (
            filter.prefix(),
            filter.tag().is_some()
                || filter.object_size_greater_than().is_some()
                || filter.object_size_less_than().is_some(),
        ),
    };
    !conditions && prefix.starts_with(rule_prefix.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, LifecycleExpiration, LifecycleRuleFilter, Tag,
    };

    use super::*;

    fn rule(
        status: ExpirationStatus,
        filter: Option<LifecycleRuleFilter>,
        days: i32,
    ) -> LifecycleRule {
        LifecycleRule::builder()
            .status(status)
            .set_filter(filter)
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(days)
                    .build(),
            )
            .build()
            .unwrap()
    }

    fn prefix(p: &str) -> Option<LifecycleRuleFilter> {
        Some(LifecycleRuleFilter::builder().prefix(p).build())
    }

    #[test]
    fn finds_the_rule_that_aborts_uploads_under_the_prefix() {
        let enabled = ExpirationStatus::Enabled;
        assert_eq!(
            abort_rule_days(&[rule(enabled.clone(), None, 3)], "from-a/"),
            Some(3)
        );
        assert_eq!(
            abort_rule_days(&[rule(enabled.clone(), prefix(""), 7)], "from-a/"),
            Some(7)
        );
        assert_eq!(
            abort_rule_days(&[rule(enabled.clone(), prefix("from-"), 7)], "from-a/x/"),
            Some(7)
        );
        // The soonest of two.
        let two = [
            rule(enabled.clone(), None, 9),
            rule(enabled.clone(), prefix("from-a/"), 2),
        ];
        assert_eq!(abort_rule_days(&two, "from-a/"), Some(2));
    }

    #[test]
    fn ignores_rules_that_miss_part_of_the_prefix_or_do_not_abort() {
        let enabled = ExpirationStatus::Enabled;
        // Narrower than the prefix, or elsewhere.
        assert_eq!(
            abort_rule_days(
                &[rule(enabled.clone(), prefix("from-a/logs/"), 3)],
                "from-a/"
            ),
            None
        );
        assert_eq!(
            abort_rule_days(&[rule(enabled.clone(), prefix("other/"), 3)], ""),
            None
        );
        // Disabled.
        assert_eq!(
            abort_rule_days(&[rule(ExpirationStatus::Disabled, None, 3)], ""),
            None
        );
        // Conditioned on a tag.
        let tagged = LifecycleRuleFilter::builder()
            .tag(Tag::builder().key("k").value("v").build().unwrap())
            .build();
        assert_eq!(
            abort_rule_days(&[rule(enabled.clone(), Some(tagged), 3)], ""),
            None
        );
        // A rule that only expires objects.
        let expires = LifecycleRule::builder()
            .status(enabled)
            .expiration(LifecycleExpiration::builder().days(30).build())
            .build()
            .unwrap();
        assert_eq!(abort_rule_days(&[expires], ""), None);
    }
}
