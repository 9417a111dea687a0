//! template.yaml as CloudFormation would create it, rendered by the emulator's template reader for
//! given parameters: alarms that reach someone, logs kept for a bounded time and written only to
//! the function's log group, scaling that follows its parameters, KMS grants only through S3,
//! the EventBridge rule's prefix, the queue only with the SQS trigger, and the parameter checks
//! that refuse bad values before anything is created.

mod support;

use serde_json::{Map, Value, json};
use support::Emulator;

/// The template's resources for `parameters` (plus the required ones), or the errors
/// CloudFormation would refuse the parameters with.
fn render(parameters: Value) -> Result<Map<String, Value>, Vec<String>> {
    let mut all = json!({
        "SourceBucket": "source-a",
        "DestinationBucket": "replica-b",
        "DestinationAccountId": "222222222222",
    });
    for (name, value) in parameters.as_object().unwrap() {
        all[name] = value.clone();
    }
    let answer = Emulator::shared().harness("template", json!({"parameters": all}));
    let errors: Vec<String> = serde_json::from_value(answer["errors"].clone()).unwrap();
    if errors.is_empty() {
        Ok(answer["resources"].as_object().unwrap().clone())
    } else {
        Err(errors)
    }
}

fn of_type<'a>(resources: &'a Map<String, Value>, kind: &str) -> Vec<(&'a String, &'a Value)> {
    resources
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

#[test]
fn every_alarm_reaches_a_topic() {
    for parameters in [
        json!({}),
        json!({"AlarmEmail": "oncall@example.com"}),
        json!({"AlarmTopicArn": "arn:aws:sns:us-east-1:111111111111:pager"}),
        json!({"TriggerType": "EventBridge"}),
    ] {
        let resources = render(parameters.clone()).unwrap();
        let alarms = of_type(&resources, "AWS::CloudWatch::Alarm");
        assert!(alarms.len() >= 5, "{parameters}: {}", alarms.len());
        let topic = match parameters["AlarmTopicArn"].as_str() {
            Some(arn) => json!(arn),
            None => {
                assert!(resources.contains_key("AlarmTopic"), "{parameters}");
                json!("AlarmTopic")
            }
        };
        for (name, alarm) in alarms {
            let properties = &alarm["Properties"];
            assert_eq!(properties["AlarmActions"], json!([topic]), "{name}");
            assert_eq!(properties["OKActions"], json!([topic]), "{name}");
        }
        let subscribed = resources.contains_key("AlarmEmailSubscription");
        assert_eq!(
            subscribed,
            parameters.get("AlarmEmail").is_some(),
            "{parameters}"
        );
    }
    // What the alarms watch: the dead-letter queue, the queue's age, errors, throttles, lag and
    // failed objects.
    let resources = render(json!({})).unwrap();
    let mut watched: Vec<String> = of_type(&resources, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| a["Properties"]["MetricName"].as_str().unwrap().to_string())
        .collect();
    watched.sort();
    assert_eq!(
        watched,
        [
            "ApproximateAgeOfOldestMessage",
            "ApproximateNumberOfMessagesVisible",
            "Errors",
            "ObjectsFailed",
            "ReplicationLag",
            "Throttles"
        ]
    );
}

#[test]
fn logs_are_kept_for_a_bounded_time_and_written_only_to_the_function_s_group() {
    let resources = render(json!({"LogRetentionDays": 90})).unwrap();
    let groups = of_type(&resources, "AWS::Logs::LogGroup");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].1["Properties"]["RetentionInDays"], json!(90));
    let function = &resources["ReplicatorFunction"]["Properties"];
    assert_eq!(function["LoggingConfig"]["LogGroup"], json!(groups[0].0));
    let role = &resources["ReplicatorRole"]["Properties"];
    assert!(role.get("ManagedPolicyArns").is_none(), "{role}");
    for policy in role["Policies"].as_array().unwrap() {
        for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            let actions = statement["Action"].to_string();
            if actions.contains("logs:") {
                let resource = statement["Resource"].as_str().unwrap();
                assert!(resource.contains("ReplicatorLogGroup"), "{statement}");
            }
            assert_ne!(statement["Resource"], json!("*"), "{statement}");
        }
    }
    assert_eq!(of_type(&resources, "AWS::CloudWatch::Dashboard").len(), 1);
}

#[test]
fn the_dashboard_plots_every_metric_the_function_publishes() {
    let resources = render(json!({})).unwrap();
    let dashboards = of_type(&resources, "AWS::CloudWatch::Dashboard");
    let body = dashboards[0].1["Properties"]["DashboardBody"].to_string();
    let everything = s3_replicator::metrics::InvocationMetrics {
        max_lag_ms: Some(1),
        listed: Some(1),
        ..Default::default()
    };
    let document = s3_replicator::metrics::emf_document("f", 0, &everything);
    let published = document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap();
    assert!(published.len() >= 7, "{document}");
    for metric in published {
        let name = metric["Name"].as_str().unwrap();
        assert!(
            body.contains(&format!("\\\"{name}\\\"")),
            "{name} is not on the dashboard"
        );
    }
}

#[test]
fn names_come_from_a_parameter_within_lambda_s_limit() {
    let name = "r".repeat(64);
    let resources = render(json!({ "FunctionName": name })).unwrap();
    let function = &resources["ReplicatorFunction"]["Properties"];
    assert_eq!(function["FunctionName"], json!(name));
    let group = &resources["ReplicatorLogGroup"]["Properties"]["LogGroupName"];
    assert_eq!(group, &json!(format!("/aws/lambda/{name}")));
    // The role may invoke the function by that name (backfill continuations).
    let role = resources["ReplicatorRole"]["Properties"].to_string();
    assert!(role.contains(&format!("function:{name}")), "{role}");
    let errors = render(json!({ "FunctionName": "r".repeat(65) })).unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("FunctionName")),
        "{errors:?}"
    );
}

#[test]
fn scaling_follows_the_parameters() {
    for (timeout, visibility) in [(30, 180), (120, 720), (900, 5400)] {
        let resources = render(json!({
            "Timeout": timeout, "MaximumConcurrency": 7, "BatchSize": 100,
            "BatchingWindowSeconds": 5,
        }))
        .unwrap();
        let queue = &resources["NotificationQueue"]["Properties"];
        assert_eq!(
            queue["VisibilityTimeout"],
            json!(visibility),
            "Timeout {timeout}"
        );
        let mapping = &resources["QueueTrigger"]["Properties"];
        assert_eq!(mapping["ScalingConfig"]["MaximumConcurrency"], json!(7));
        assert_eq!(mapping["BatchSize"], json!(100));
        assert_eq!(mapping["MaximumBatchingWindowInSeconds"], json!(5));
        assert_eq!(
            resources["ReplicatorFunction"]["Properties"]["Timeout"],
            json!(timeout)
        );
    }
}

#[test]
fn kms_grants_only_through_s3() {
    let resources = render(json!({
        "DestinationKmsKeyArn": "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab",
        "SourceKmsKeyArn": "arn:aws:kms:us-east-1:111111111111:key/5678efgh-12ab",
        "DestinationRegion": "eu-west-1",
    }))
    .unwrap();
    for (name, service) in [
        ("ReplicatorKmsPolicy", "s3.eu-west-1.amazonaws.com"),
        ("SourceKmsPolicy", "s3.us-east-1.amazonaws.com"),
    ] {
        let statement = &resources[name]["Properties"]["PolicyDocument"]["Statement"][0];
        assert_eq!(
            statement["Condition"]["StringEquals"]["kms:ViaService"],
            json!(service),
            "{name}"
        );
    }
}

#[test]
fn the_queue_exists_only_with_the_sqs_trigger_and_the_rule_filters_on_the_prefix() {
    let resources = render(json!({"TriggerType": "EventBridge", "SourcePrefix": "logs/"})).unwrap();
    for absent in [
        "NotificationQueue",
        "QueueTrigger",
        "NotificationQueuePolicy",
        "QueueAgeAlarm",
    ] {
        assert!(!resources.contains_key(absent), "{absent}");
    }
    let policies = resources["ReplicatorRole"]["Properties"]["Policies"].to_string();
    assert!(!policies.contains("sqs:ReceiveMessage"), "{policies}");
    let pattern = &resources["EventBridgeTrigger"]["Properties"]["EventPattern"];
    assert_eq!(
        pattern["detail"]["object"]["key"],
        json!([{"prefix": "logs/"}])
    );

    // Without a prefix, the rule matches the whole bucket.
    let resources = render(json!({"TriggerType": "EventBridge"})).unwrap();
    let pattern = &resources["EventBridgeTrigger"]["Properties"]["EventPattern"];
    assert_eq!(pattern["detail"], json!({"bucket": {"name": ["source-a"]}}));

    let resources = render(json!({})).unwrap();
    assert!(resources.contains_key("NotificationQueue"));
    assert!(!resources.contains_key("EventBridgeTrigger"));
}

#[test]
fn bad_parameters_are_refused_before_anything_is_created() {
    let refused = [
        (json!({"DestinationBucket": "source-a"}), "DistinctBuckets"),
        (json!({"SourceBucket": "Bad_Bucket"}), "SourceBucket"),
        (json!({"DestinationBucket": "ab"}), "DestinationBucket"),
        (json!({"SourcePrefix": "logs/*"}), "SourcePrefix"),
        (
            json!({"DestinationPrefix": "from-${aws:username}/"}),
            "DestinationPrefix",
        ),
        (json!({"DestinationPrefix": "a\"b"}), "DestinationPrefix"),
        (
            json!({"DestinationKmsKeyArn": "alias/replicas"}),
            "DestinationKmsKeyArn",
        ),
        (
            json!({"DestinationAccountId": "2222"}),
            "DestinationAccountId",
        ),
        (json!({"DestinationRegion": "Europe"}), "DestinationRegion"),
        (json!({"Timeout": 45}), "Timeout"),
        (json!({"AlarmEmail": "nobody"}), "AlarmEmail"),
        (json!({"AlarmTopicArn": "pager"}), "AlarmTopicArn"),
        (json!({"MaximumConcurrency": 1}), "MaximumConcurrency"),
    ];
    for (parameters, named) in refused {
        let errors = render(parameters.clone()).unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with(named)),
            "{parameters}: {errors:?}"
        );
    }
    // And good values pass.
    render(json!({
        "SourcePrefix": "logs/2026/", "DestinationPrefix": "from-a/",
        "DestinationRegion": "eu-west-1", "AlarmEmail": "oncall@example.com",
    }))
    .unwrap();
}

#[test]
fn a_batch_operations_role_exists_only_with_its_bucket_and_may_only_run_jobs() {
    let resources = render(json!({})).unwrap();
    assert!(!resources.contains_key("BatchOperationsRole"));
    let resources = render(json!({"BatchOperationsBucket": "inventory-a"})).unwrap();
    let role = &resources["BatchOperationsRole"]["Properties"];
    let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(
        trust["Principal"]["Service"],
        json!("batchoperations.s3.amazonaws.com")
    );
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    for statement in statements {
        let resource = statement["Resource"].to_string();
        assert!(
            resource.contains("ReplicatorFunction") || resource.contains("inventory-a"),
            "{statement}"
        );
    }
    let errors = render(json!({"BatchOperationsBucket": "Inventory_A"})).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("BatchOperationsBucket")),
        "{errors:?}"
    );
}

/// Every statement of the role's policies in the rendered template, by `Sid`.
fn role_statements(resources: &Map<String, Value>) -> Map<String, Value> {
    let mut documents: Vec<&Value> = resources["ReplicatorRole"]["Properties"]["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| &policy["PolicyDocument"])
        .collect();
    for (_, policy) in of_type(resources, "AWS::IAM::RolePolicy") {
        documents.push(&policy["Properties"]["PolicyDocument"]);
    }
    documents
        .into_iter()
        .flat_map(|document| document["Statement"].as_array().unwrap().iter())
        .map(|statement| {
            (
                statement["Sid"].as_str().unwrap().to_string(),
                statement.clone(),
            )
        })
        .collect()
}

/// `role-policy`'s generator and the template grant the same statements for the same settings:
/// the same `Sid`s and actions, and the same resources and conditions wherever the template names
/// them without a resource of its own (queues and log group are the stack's there).
#[test]
fn the_role_policy_command_grants_what_the_template_grants() {
    let destination_key = "arn:aws:kms:eu-west-1:222222222222:key/replicas";
    let source_key = "arn:aws:kms:us-east-1:111111111111:key/source";
    let settings = [
        ("SourcePrefix", "SOURCE_PREFIX", "logs/"),
        ("DestinationPrefix", "DESTINATION_PREFIX", "from-a/"),
        ("DestinationAcl", "DESTINATION_ACL", "none"),
        ("ReplicateDeletes", "REPLICATE_DELETES", "true"),
        ("DestinationRegion", "DESTINATION_REGION", "eu-west-1"),
        (
            "DestinationKmsKeyArn",
            "DESTINATION_KMS_KEY_ID",
            destination_key,
        ),
    ];
    for acl_and_deletes in [true, false] {
        let chosen: Vec<_> = settings
            .iter()
            .filter(|(parameter, ..)| {
                acl_and_deletes || !["DestinationAcl", "ReplicateDeletes"].contains(parameter)
            })
            .collect();
        let mut parameters = json!({"SourceKmsKeyArn": source_key});
        for (parameter, _, value) in &chosen {
            parameters[*parameter] = json!(value);
        }
        let resources = render(parameters).unwrap();
        let template = role_statements(&resources);
        let function_arn = template["InvokeSelfForBackfill"]["Resource"]
            .as_str()
            .unwrap();
        let config = s3_replicator::config::Config::from_lookup(|name| match name {
            "SOURCE_BUCKET" => Some("source-a".into()),
            "DESTINATION_BUCKET" => Some("replica-b".into()),
            _ => chosen
                .iter()
                .find(|(_, variable, _)| *variable == name)
                .map(|(.., value)| value.to_string()),
        })
        .unwrap();
        let grant = s3_replicator::ops::role::RoleGrant {
            function_arn: function_arn.to_string(),
            queue_arn: Some("arn:aws:sqs:us-east-1:111111111111:events".into()),
            dead_letter_arn: Some("arn:aws:sqs:us-east-1:111111111111:dead".into()),
            source_kms_key_arn: Some(source_key.into()),
        };
        let generated = grant.identity_policy(&config);
        let mut sids = Vec::new();
        for statement in generated["Statement"].as_array().unwrap() {
            let sid = statement["Sid"].as_str().unwrap();
            sids.push(sid.to_string());
            let granted = template
                .get(sid)
                .unwrap_or_else(|| panic!("{sid} is not in the template"));
            assert_eq!(statement["Action"], granted["Action"], "{sid}");
            assert_eq!(
                statement.get("Condition"),
                granted.get("Condition"),
                "{sid}"
            );
            if ![
                "ConsumeQueue",
                "SendFailedInvocationsToDeadLetterQueue",
                "WriteLogs",
            ]
            .contains(&sid)
            {
                assert_eq!(statement["Resource"], granted["Resource"], "{sid}");
            }
        }
        let mut expected: Vec<String> = template.keys().cloned().collect();
        expected.sort();
        sids.sort();
        assert_eq!(sids, expected);
    }
}
