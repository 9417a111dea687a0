//! The compiled function binary, served by cargo-lambda's Lambda runtime emulator
//! (`cargo lambda watch --only-lambda-apis`) and invoked with `cargo lambda invoke --data-file`,
//! replicating on the local S3 emulator.

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{World, WorldOptions, failed_message_ids, repo_root, s3_event, sqs_batch, unique};

/// Kills the process when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cargo_lambda() -> PathBuf {
    let venv = repo_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("cargo-lambda")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts cargo-lambda's Lambda runtime emulator and returns it with the port it listens on. A
/// free port can be taken by another process before the emulator binds it: the emulator then
/// exits, and another port is tried.
fn start_runtime_emulator() -> (Running, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut runtime = Running(
            Command::new(cargo_lambda())
                .args([
                    "lambda",
                    "watch",
                    "--only-lambda-apis",
                    "--invoke-address",
                    "127.0.0.1",
                ])
                .args(["--invoke-port", &port.to_string()])
                .current_dir(repo_root())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start cargo lambda watch (install it with scripts/setup.sh)"),
        );
        if wait_for_port(&mut runtime, port) {
            return (runtime, port);
        }
    }
    panic!("cargo lambda watch exited five times before listening");
}

/// Waits until `port` accepts connections (true) or the process exits first (false). The bound
/// only keeps a hung emulator from hanging the test: it starts in well under a second.
fn wait_for_port(process: &mut Running, port: u16) -> bool {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if process.0.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "cargo lambda watch neither listened on {port} nor exited in 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another process may hold the port: it counts only if the emulator still runs.
    process.0.try_wait().unwrap().is_none()
}

fn invoke(port: u16, payload: &Value) -> Output {
    let path = std::env::temp_dir().join(format!("{}.json", unique("payload")));
    std::fs::write(&path, payload.to_string()).unwrap();
    let output = Command::new(cargo_lambda())
        .args([
            "lambda",
            "invoke",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
        ])
        .arg(port.to_string())
        .arg("--data-file")
        .arg(&path)
        .current_dir(repo_root())
        .output()
        .expect("run cargo lambda invoke (install it with scripts/setup.sh)");
    let _ = std::fs::remove_file(path);
    output
}

// One scenario read top to bottom: the runtime emulator, the binary, two invocations, its logs.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread")]
async fn compiled_function_replicates_under_the_lambda_runtime_emulator() {
    let world = World::new("binary", WorldOptions::default()).await;
    world.put_source("bin/hello world.txt", b"hello").await;

    let (_runtime, port) = start_runtime_emulator();

    let keys = &world.function_keys;
    let mut function = Running(
        Command::new(env!("CARGO_BIN_EXE_s3-replicator"))
            .envs(world.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_ENDPOINT_URL", &world.emulator.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", &keys.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &keys.secret_access_key)
            .env(
                "AWS_SESSION_TOKEN",
                keys.session_token.as_deref().unwrap_or_default(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the function binary"),
    );

    let batch = sqs_batch(&[
        s3_event("s3-put.json", &world.source_bucket, "bin/hello world.txt"),
        s3_event("s3-put.json", "some-other-bucket", "bin/hello world.txt"),
    ]);
    let output = invoke(port, &batch);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "invoke failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let response: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(failed_message_ids(&response), vec!["message-1"]);
    assert_eq!(
        world.destination_body("bin/hello world.txt").await,
        b"hello"
    );

    let output = invoke(port, &serde_json::json!({"hello": "world"}));
    assert!(
        !output.status.success(),
        "an unrecognised payload must fail the invocation"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("unrecognised payload"), "{text}");

    let _ = function.0.kill();
    let _ = function.0.wait();
    let mut logs = String::new();
    function
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let mut errors = String::new();
    function
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    support::keep_log("function-binary", &format!("{logs}{errors}"));
    let copied = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["outcome"] == "copied")
        .unwrap_or_else(|| panic!("no JSON log line with outcome copied in: {logs}"));
    assert_eq!(copied["fields"]["key"], "bin/hello world.txt");
    // The invocation's metrics, as a CloudWatch Embedded Metric Format line.
    let metrics = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line.get("_aws").is_some())
        .unwrap_or_else(|| panic!("no EMF line in: {logs}"));
    assert_eq!(
        metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "S3Replicator"
    );
    assert_eq!(
        (
            metrics["ObjectsCopied"].as_u64(),
            metrics["ObjectsFailed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(metrics["BytesCopied"], 5);
    assert_eq!(copied["fields"]["bytes"], 5);
    assert!(
        !logs.contains(&keys.secret_access_key),
        "the secret key leaked into the logs"
    );
}
