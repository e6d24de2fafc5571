//! The `reportjob` command line.

fn main() {
    let cli = reportjob::cli::parse_args();
    reportjob::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(reportjob::error::EXIT_TRANSIENT);
        }
    };
    let code = runtime.block_on(reportjob::cli::dispatch(cli));
    std::process::exit(code);
}
