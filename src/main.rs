//! The function binary: under Lambda it serves invocations; with a command (`bucket-policy`,
//! `merge-policy`, `subscribe`, `unsubscribe`, `doctor`) it runs that command and exits.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        if let Err(error) = s3_replicator::entry::cli::run(&args).await {
            eprintln!("{error}");
            std::process::exit(error.exit_code());
        }
        return Ok(());
    }
    lambda_runtime::tracing::init_default_subscriber();
    s3_replicator::run_lambda().await
}
