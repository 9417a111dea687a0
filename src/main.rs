//! The function binary: under Lambda it serves invocations; with a command (`bucket-policy`,
//! `doctor`) it runs that command and exits.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        return s3_replicator::cli::run(&args).await.map_err(Into::into);
    }
    lambda_runtime::tracing::init_default_subscriber();
    s3_replicator::run_lambda().await
}
