//! The `reportjob` command line.

use reportjob::cli::{self, client::plugin_complete};

fn main() {
    // SAFETY: the first thing main does, while the process has one thread.
    #[allow(unsafe_code)]
    unsafe {
        reportjob::source::session::forget_libpq_environment();
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Completion words are not a command line: they go around the parser.
    let completing = plugin_complete::requested(&args);
    let cli = match completing {
        Some(_) => None,
        None => Some(cli::parse_args()),
    };
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
    let code = match (cli, completing) {
        (Some(cli), _) => runtime.block_on(cli::dispatch(cli)),
        (None, words) => runtime.block_on(plugin_complete::run(words.unwrap_or_default())),
    };
    std::process::exit(code);
}
