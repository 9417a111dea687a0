//! Test support: the local S3 emulator (moto behind the authorization layer in
//! `tests/emulator/server.py`), the two-account world the tests build on it, and the event
//! fixtures from `events/`.
#![allow(dead_code)]

pub mod fault_proxy;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use s3_replicator::Config;
use s3_replicator::ops::policy::DestinationGrant;
use serde_json::{Value, json};

/// `name-<pid>.log` in `S3R_TEST_LOG_DIR` (created), when scripts/test.sh set it.
fn log_file(name: &str) -> Option<PathBuf> {
    let directory = PathBuf::from(std::env::var_os("S3R_TEST_LOG_DIR")?);
    std::fs::create_dir_all(&directory).unwrap();
    Some(directory.join(format!("{name}-{}.log", std::process::id())))
}

/// With `S3R_TEST_LOG_DIR` set (scripts/test.sh sets it), sends every log line the replicator
/// and the AWS SDK write in this test binary to a file there, at debug level, so that a scan of
/// the whole run can check that no log line holds a credential or a payload. Called by
/// [`Emulator::shared`] and [`World::new`]; later calls do nothing.
pub fn capture_logs() {
    static CAPTURE: OnceLock<()> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let binary = std::env::current_exe().unwrap();
        let Some(path) = log_file(&binary.file_stem().unwrap().to_string_lossy()) else {
            return;
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .init();
    });
}

/// Keeps a copy of a process's log output (the function binary's) in `S3R_TEST_LOG_DIR`, when
/// set, for the scan of the whole run.
pub fn keep_log(name: &str, text: &str) {
    if let Some(path) = log_file(name) {
        std::fs::write(path, text).unwrap();
    }
}

/// Prints a figure a test measured and, with `S3R_TEST_LOG_DIR` set, appends it to `figures.txt`
/// there, which scripts/test.sh prints after the run (the test harness hides a passing test's
/// output).
pub fn report_figures(text: &str) {
    let text = if versioned_run() {
        format!("versioned buckets: {text}")
    } else {
        text.to_string()
    };
    println!("{text}");
    let Some(directory) = std::env::var_os("S3R_TEST_LOG_DIR") else {
        return;
    };
    let directory = PathBuf::from(directory);
    std::fs::create_dir_all(&directory).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(directory.join("figures.txt"))
        .unwrap();
    std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes()).unwrap();
}

pub const ACCOUNT_A: &str = "111111111111";

/// The function ARN template.yaml lets the role invoke (the `FunctionName` parameter's default).
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:111111111111:function:s3-replicator";
pub const ACCOUNT_B: &str = "222222222222";

/// Access keys for one identity on the emulator.
#[derive(Debug, Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Keys {
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "emulator",
        )
    }

    fn from_json(value: &Value) -> Self {
        Keys {
            access_key_id: value["access_key_id"].as_str().unwrap().to_string(),
            secret_access_key: value["secret_access_key"].as_str().unwrap().to_string(),
            session_token: value["session_token"].as_str().map(str::to_string),
        }
    }
}

/// The running emulator, one per test binary. It exits when this process does (its standard
/// input closes).
pub struct Emulator {
    pub endpoint: String,
    pub admin_a: Keys,
    pub admin_b: Keys,
    _process: Mutex<(Child, ChildStdin)>,
    http: ureq::Agent,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that has the emulator's pinned dependencies: `S3_EMULATOR_PYTHON`, else the
/// project's `.venv`.
pub fn emulator_python() -> PathBuf {
    if let Ok(python) = std::env::var("S3_EMULATOR_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no emulator Python: run scripts/setup.sh (creates .venv) or set S3_EMULATOR_PYTHON"
    );
    venv
}

impl Emulator {
    /// Starts the emulator on first use and returns it.
    pub fn shared() -> &'static Emulator {
        capture_logs();
        static EMULATOR: OnceLock<Emulator> = OnceLock::new();
        EMULATOR.get_or_init(Emulator::start)
    }

    fn start() -> Emulator {
        let mut child = Command::new(emulator_python())
            .arg(repo_root().join("tests/emulator/server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/emulator/server.py");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the emulator's first line");
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("emulator did not start ({e}): {line:?}"));
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Emulator {
            endpoint: info["endpoint"].as_str().unwrap().to_string(),
            admin_a: Keys::from_json(&info["accounts"]["a"]),
            admin_b: Keys::from_json(&info["accounts"]["b"]),
            _process: Mutex::new((child, stdin)),
            http,
        }
    }

    /// Calls the emulator's control API and returns its JSON answer, panicking on an error.
    pub fn harness(&self, route: &str, body: Value) -> Value {
        let url = format!("{}/_harness/{route}", self.endpoint);
        let mut response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap();
        assert!(status.is_success(), "POST {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The account that owns `bucket`/`key` according to the emulator's ownership rules.
    pub fn object_owner(&self, bucket: &str, key: &str) -> Option<String> {
        let url = format!("{}/_harness/object-owner", self.endpoint);
        let mut response = self
            .http
            .get(&url)
            .query("bucket", bucket)
            .query("key", key)
            .call()
            .unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        value["owner"].as_str().map(str::to_string)
    }

    /// An S3 client signed with `keys`, as the tests' own callers use.
    pub fn client(&self, keys: &Keys) -> Client {
        self.client_in(keys, "us-east-1")
    }

    /// An S3 client signed with `keys` for `region`.
    pub fn client_in(&self, keys: &Keys, region: &str) -> Client {
        let credentials = keys.credentials();
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .force_path_style(true)
            .build();
        Client::from_conf(config)
    }

    /// The SDK configuration the function builds at init, with the function role's keys in
    /// place of Lambda's environment.
    pub async fn sdk_config(&self, keys: &Keys, region: &str) -> aws_config::SdkConfig {
        self.sdk_config_at(keys, region, &self.endpoint).await
    }

    /// The same, with requests sent to `endpoint` (a proxy in front of the emulator).
    pub async fn sdk_config_at(
        &self,
        keys: &Keys,
        region: &str,
        endpoint: &str,
    ) -> aws_config::SdkConfig {
        let credentials = keys.credentials();
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(credentials)
            .load()
            .await
    }
}

/// A name no other test in this run uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options of a test world: the function's configuration, as environment variables.
#[derive(Debug, Clone, Default)]
pub struct WorldOptions {
    pub destination_prefix: String,
    pub source_prefix: String,
    pub destination_acl: Option<&'static str>,
    pub replicate_deletes: bool,
    /// Whether account B attaches the bucket policy the project hands it.
    pub without_bucket_policy: bool,
    /// Region of the source bucket, and of the function (default us-east-1).
    pub source_region: Option<&'static str>,
    /// Region of the destination bucket (default: the source's).
    pub destination_region: Option<&'static str>,
    /// `DESTINATION_REGION` as configured, when it should differ from the bucket's real region.
    pub configured_destination_region: Option<&'static str>,
    /// Statements (by Sid) left out of the role's identity policy from template.yaml.
    pub drop_statements: Vec<&'static str>,
    /// Actions left out of the role's identity policy, as `Sid/action`.
    pub drop_actions: Vec<String>,
    /// Actions left out of the bucket policy account B attaches.
    pub drop_bucket_actions: Vec<String>,
}

/// Account A with a source bucket and the function's role (its identity policy rendered from
/// template.yaml), account B with a destination bucket and the bucket policy from
/// [`DestinationGrant`].
pub struct World {
    pub emulator: &'static Emulator,
    pub source_bucket: String,
    pub destination_bucket: String,
    pub admin_a: Client,
    pub admin_b: Client,
    pub role_arn: String,
    pub function_keys: Keys,
    pub env: Vec<(String, String)>,
    /// The function's own region (`AWS_REGION`).
    pub function_region: String,
    /// The identity policies the role was given (rendered from template.yaml).
    pub role_policies: Value,
    /// Actions left out of the bucket policy B attaches.
    pub drop_bucket_actions: Vec<String>,
    /// Whether both buckets are versioned (the test command's versioned run).
    pub versioned: bool,
}

/// Whether this is the versioned run of the suites (`S3R_TEST_VERSIONED=1`, set by
/// `scripts/test.sh`): every world's buckets are then versioned from the start.
pub fn versioned_run() -> bool {
    std::env::var("S3R_TEST_VERSIONED").is_ok_and(|v| v == "1")
}

impl World {
    pub async fn new(name: &str, options: WorldOptions) -> World {
        capture_logs();
        let emulator = Emulator::shared();
        let source_bucket = unique(&format!("{name}-src"));
        let destination_bucket = unique(&format!("{name}-dst"));
        let source_region = options.source_region.unwrap_or("us-east-1");
        let destination_region = options.destination_region.unwrap_or(source_region);
        let admin_a = emulator.client_in(&emulator.admin_a, source_region);
        let admin_b = emulator.client_in(&emulator.admin_b, destination_region);
        create_bucket(&admin_a, &source_bucket, source_region).await;
        create_bucket(&admin_b, &destination_bucket, destination_region).await;

        let acl = options
            .destination_acl
            .unwrap_or("bucket-owner-full-control");
        let role = emulator.harness(
            "function-role",
            json!({
                "name": unique(&format!("{name}-role")),
                "parameters": {
                    "SourceBucket": source_bucket,
                    "DestinationBucket": destination_bucket,
                    "DestinationPrefix": options.destination_prefix,
                    "SourcePrefix": options.source_prefix,
                    "DestinationAcl": acl,
                    "ReplicateDeletes": options.replicate_deletes.to_string(),
                },
                "drop_statements": options.drop_statements,
                "drop_actions": options.drop_actions,
            }),
        );
        let role_arn = role["role_arn"].as_str().unwrap().to_string();
        let world = World {
            emulator,
            env: vec![
                ("SOURCE_BUCKET".into(), source_bucket.clone()),
                ("DESTINATION_BUCKET".into(), destination_bucket.clone()),
                (
                    "DESTINATION_PREFIX".into(),
                    options.destination_prefix.clone(),
                ),
                ("SOURCE_PREFIX".into(), options.source_prefix.clone()),
                ("DESTINATION_ACL".into(), acl.to_string()),
                (
                    "REPLICATE_DELETES".into(),
                    options.replicate_deletes.to_string(),
                ),
                ("S3_FORCE_PATH_STYLE".into(), "true".into()),
                ("DESTINATION_ACCOUNT_ID".into(), ACCOUNT_B.into()),
                ("FUNCTION_ROLE_ARN".into(), role_arn.clone()),
                (
                    "DESTINATION_REGION".into(),
                    options
                        .configured_destination_region
                        .unwrap_or(destination_region)
                        .to_string(),
                ),
            ],
            function_region: source_region.to_string(),
            role_policies: role["policies"].clone(),
            source_bucket,
            destination_bucket,
            admin_a,
            admin_b,
            role_arn,
            function_keys: Keys::from_json(&role),
            drop_bucket_actions: options.drop_bucket_actions.clone(),
            versioned: versioned_run(),
        };
        if world.versioned {
            enable_versioning(&world.admin_a, &world.source_bucket).await;
            enable_versioning(&world.admin_b, &world.destination_bucket).await;
        }
        if !options.without_bucket_policy {
            world.attach_bucket_policy().await;
        }
        world
    }

    /// The grant account B gives, from the function's configuration.
    pub fn grant(&self) -> DestinationGrant {
        DestinationGrant::from_config(&self.config(), self.role_arn.clone())
    }

    pub async fn attach_bucket_policy(&self) {
        let mut policy = self.grant().bucket_policy();
        for dropped in &self.drop_bucket_actions {
            let statements = policy["Statement"].as_array_mut().unwrap();
            let before = statements.clone();
            for statement in statements.iter_mut() {
                if let Some(actions) = statement["Action"].as_array_mut() {
                    actions.retain(|action| action != dropped);
                } else if statement["Action"] == *dropped {
                    statement["Action"] = json!([]);
                }
            }
            statements.retain(|statement| statement["Action"] != json!([]));
            assert_ne!(
                *statements, before,
                "no action {dropped} in the bucket policy"
            );
        }
        self.admin_b
            .put_bucket_policy()
            .bucket(&self.destination_bucket)
            .policy(policy.to_string())
            .send()
            .await
            .unwrap();
    }

    pub async fn remove_bucket_policy(&self) {
        self.admin_b
            .delete_bucket_policy()
            .bucket(&self.destination_bucket)
            .send()
            .await
            .unwrap();
    }

    pub fn config(&self) -> Config {
        Config::from_lookup(|name| {
            self.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    /// The function as Lambda would run it: config from the environment, the client built by
    /// the library from an SDK configuration carrying the role's credentials.
    pub async fn replicator(&self) -> s3_replicator::Replicator {
        self.replicator_with(&self.function_region.clone(), &[])
            .await
    }

    /// The function deployed in `function_region`, with `extra` environment variables set
    /// (or, with an empty value, removed).
    pub async fn replicator_with(
        &self,
        function_region: &str,
        extra: &[(&str, &str)],
    ) -> s3_replicator::Replicator {
        self.replicator_via(&self.emulator.endpoint.clone(), function_region, extra)
            .await
    }

    /// The function sending its S3 calls to `endpoint` (a proxy in front of the emulator).
    pub async fn replicator_via(
        &self,
        endpoint: &str,
        function_region: &str,
        extra: &[(&str, &str)],
    ) -> s3_replicator::Replicator {
        let env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(name, _)| name == k))
            .cloned()
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let config =
            Config::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
                .unwrap();
        let sdk = self
            .emulator
            .sdk_config_at(&self.function_keys, function_region, endpoint)
            .await;
        let clients = s3_replicator::S3Clients::new(&sdk, &config).unwrap();
        s3_replicator::Replicator::new(clients, config)
    }

    /// A Lambda client with the function's credentials, for invoking the function itself.
    pub async fn lambda_client(&self) -> aws_sdk_lambda::Client {
        let sdk = self
            .emulator
            .sdk_config(&self.function_keys, "us-east-1")
            .await;
        aws_sdk_lambda::Client::new(&sdk)
    }

    pub async fn put_source(&self, key: &str, body: &[u8]) {
        self.admin_a
            .put_object()
            .bucket(&self.source_bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    /// Uploads `body` to the source in parts of `part_size` (the last one shorter), as a
    /// multipart upload does, with no other headers.
    pub async fn put_source_in_parts(&self, key: &str, body: &[u8], part_size: usize) {
        put_in_parts(
            &self.admin_a,
            &self.source_bucket,
            key,
            body,
            part_size,
            |c| c,
        )
        .await;
    }

    /// Keys of the replicas in the destination bucket (the backfill lock markers left out),
    /// listed by account B's admin.
    pub async fn destination_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .admin_b
            .list_objects_v2()
            .bucket(&self.destination_bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page.unwrap().contents() {
                let key = object.key().unwrap();
                if !is_lock_marker(key) {
                    keys.push(key.to_string());
                }
            }
        }
        keys
    }

    /// Hands `replicator` the `events/s3-put.json` notification for `key` in the source bucket,
    /// with the object's ETag and size as S3 would send them (when it exists).
    pub async fn put_event(
        &self,
        replicator: &s3_replicator::Replicator,
        key: &str,
    ) -> Result<Value, s3_replicator::HandlerError> {
        let event = self.s3_event_now("s3-put.json", key).await;
        s3_replicator::handle_payload(&event, replicator).await
    }

    /// The notification fixture `fixture_name` for `key`, carrying the source object's current
    /// ETag (unquoted) and size, as S3 writes them into a notification; the fixture's own when the
    /// object does not exist.
    pub async fn s3_event_now(&self, fixture_name: &str, key: &str) -> Value {
        let mut event = s3_event(fixture_name, &self.source_bucket, key);
        let head = self
            .admin_a
            .head_object()
            .bucket(&self.source_bucket)
            .key(key)
            .send()
            .await;
        if let Ok(head) = head {
            let object = &mut event["Records"][0]["s3"]["object"];
            object["eTag"] = json!(head.e_tag().unwrap_or_default().trim_matches('"'));
            object["size"] = json!(head.content_length().unwrap_or_default());
        }
        event
    }

    /// The S3 requests the emulator has served so far on this world's two buckets, by
    /// operation (`CopyObject`, `UploadPartCopy`, `HEAD`, `GET ?list-type`, ...), whoever sent
    /// them.
    pub fn operations(&self) -> std::collections::BTreeMap<String, u64> {
        let stats = self.emulator.harness("stats", json!({}));
        let mut total = std::collections::BTreeMap::new();
        for bucket in [&self.source_bucket, &self.destination_bucket] {
            if let Some(counts) = stats["operations"][bucket.as_str()].as_object() {
                for (operation, count) in counts {
                    *total.entry(operation.clone()).or_insert(0) += count.as_u64().unwrap();
                }
            }
        }
        total
    }

    /// The requests made on this world's buckets while `action` ran, by operation (none left
    /// out: the test runs nothing else on these buckets meanwhile).
    pub async fn operations_during<F: std::future::Future>(
        &self,
        action: F,
    ) -> (F::Output, std::collections::BTreeMap<String, u64>) {
        let before = self.operations();
        let output = action.await;
        let mut during = self.operations();
        for (operation, count) in before {
            *during.entry(operation).or_insert(0) -= count;
        }
        during.retain(|_, count| *count > 0);
        (output, during)
    }

    /// The head of `key` in B, read by B's admin.
    pub async fn destination_head(
        &self,
        key: &str,
    ) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.admin_b
            .head_object()
            .bucket(&self.destination_bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("B's admin reads the head of {key}: {e:?}"))
    }

    /// Multipart uploads left open in B.
    pub async fn open_uploads(&self) -> usize {
        self.admin_b
            .list_multipart_uploads()
            .bucket(&self.destination_bucket)
            .send()
            .await
            .unwrap()
            .uploads()
            .len()
    }

    /// The destination object's bytes, read by account B's admin.
    pub async fn destination_body(&self, key: &str) -> Vec<u8> {
        let object = self
            .admin_b
            .get_object()
            .bucket(&self.destination_bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("B's admin reads {key}: {e:?}"));
        object.body.collect().await.unwrap().into_bytes().to_vec()
    }
}

/// Creates `bucket` in `region`, with the location constraint S3 requires outside us-east-1.
/// Uploads `body` to `bucket` in parts of `part_size` (the last one shorter), as a multipart
/// upload does; `configure` sets the upload's headers (metadata, tags, storage class...).
pub async fn put_in_parts(
    client: &Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    part_size: usize,
    configure: impl FnOnce(CreateUpload) -> CreateUpload,
) {
    let upload = configure(client.create_multipart_upload().bucket(bucket).key(key))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create upload {key}: {e:?}"));
    upload_in_parts(
        client,
        bucket,
        key,
        upload.upload_id().unwrap(),
        body,
        part_size,
    )
    .await;
}

/// Uploads `body` in parts of `part_size` into the started upload `upload_id`, and completes it.
pub async fn upload_in_parts(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    body: &[u8],
    part_size: usize,
) {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let mut parts = Vec::new();
    for (index, chunk) in body.chunks(part_size).enumerate() {
        let number = index as i32 + 1;
        let part = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(chunk.to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload part {number} of {key}: {e:?}"));
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("complete upload {key}: {e:?}"));
}

/// Turns versioning on for `bucket`.
pub async fn enable_versioning(client: &Client, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("versioning on {bucket}: {e:?}"));
}

/// The request that starts a multipart upload, for [`put_in_parts`] to configure.
pub type CreateUpload =
    aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;

pub async fn create_bucket(client: &Client, bucket: &str, region: &str) {
    let mut request = client.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(region.into())
                .build(),
        );
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {bucket} in {region}: {e:?}"));
}

/// Whether `key` is a backfill's lock marker (kept in the destination bucket), not a replica.
pub fn is_lock_marker(key: &str) -> bool {
    key.contains(s3_replicator::backfill::lock::LOCK_FOLDER)
}

/// Key → ETag of every object under `prefix`, as `client` lists them (the backfill lock markers
/// left out).
pub async fn etags(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut listing = std::collections::BTreeMap::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents() {
            let key = object.key().unwrap();
            if !is_lock_marker(key) {
                listing.insert(key.to_string(), object.e_tag().unwrap().to_string());
            }
        }
    }
    listing
}

/// Encodes a key the way S3 writes it into event notifications
/// (`application/x-www-form-urlencoded`).
pub fn form_encode(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A fixture from `events/`.
pub fn fixture(name: &str) -> Value {
    let path = repo_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// `events/s3-put.json` (or another S3 notification fixture) naming `bucket` and the
/// form-encoded `key`.
pub fn s3_event(fixture_name: &str, bucket: &str, key: &str) -> Value {
    let mut event = fixture(fixture_name);
    let record = &mut event["Records"][0]["s3"];
    record["bucket"]["name"] = json!(bucket);
    record["bucket"]["arn"] = json!(format!("arn:aws:s3:::{bucket}"));
    record["object"]["key"] = json!(form_encode(key));
    event
}

/// `events/eventbridge-object-created.json` (or `-deleted`) naming `bucket` and `key` as given.
pub fn eventbridge_event(fixture_name: &str, bucket: &str, key: &str) -> Value {
    let mut event = fixture(fixture_name);
    event["resources"] = json!([format!("arn:aws:s3:::{bucket}")]);
    event["detail"]["bucket"]["name"] = json!(bucket);
    event["detail"]["object"]["key"] = json!(key);
    event
}

/// An SQS batch in the shape of `events/sqs-s3.json`, one message per body.
pub fn sqs_batch(bodies: &[Value]) -> Value {
    let template = fixture("sqs-s3.json")["Records"][0].clone();
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut record = template.clone();
            record["messageId"] = json!(format!("message-{i}"));
            record["body"] = json!(body.to_string());
            record
        })
        .collect();
    json!({ "Records": records })
}

/// The message ids an SQS partial batch response lists as failed.
pub fn failed_message_ids(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

/// A Batch Operations job from the fixture `name`, one task per (bucket, key), the key
/// form-encoded as a manifest may hold it.
pub fn batch_job(name: &str, tasks: &[(&str, &str)]) -> Value {
    let mut job = fixture(name);
    let template = job["tasks"][0].clone();
    job["tasks"] = tasks
        .iter()
        .enumerate()
        .map(|(i, (task_bucket, key))| {
            let mut task = template.clone();
            task["taskId"] = json!(format!("task-{i}"));
            task["s3Key"] = json!(form_encode(key));
            if task.get("s3BucketArn").is_some() {
                task["s3BucketArn"] = json!(format!("arn:aws:s3:::{task_bucket}"));
            } else {
                task["s3Bucket"] = json!(task_bucket);
            }
            task
        })
        .collect();
    job
}

/// (resultCode, resultString) of each task in a Batch Operations response.
pub fn result_codes(response: &Value) -> Vec<(String, String)> {
    response["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resultCode"].as_str().unwrap().to_string(),
                r["resultString"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
