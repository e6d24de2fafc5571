//! The one place the command line builds a Kubernetes client (the client commands and the
//! controller), and how API errors read for people and map to exit codes.

use std::path::{Path, PathBuf};

use clap::Args;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::exit::CommandError;
use crate::api::ReportJob;
use crate::error::error_chain;

/// Which cluster and namespace.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Namespace of the ReportJob. Default: the one in the manifest (submit), else the
    /// kubeconfig context's namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The kubeconfig file. Default: KUBECONFIG, then ~/.kube/config, then the in-cluster
    /// service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context. Default: the current context.
    #[arg(long)]
    pub context: Option<String>,
}

/// The configuration from `--kubeconfig` and `--context`, or as kube infers it
/// (KUBECONFIG, ~/.kube/config, then in-cluster). Errors exit 2 (no result).
/// A kubeconfig that could not be used: a context it does not have is named as the
/// `--context` error it is, not as a fault of the file.
fn config_error(
    source: &str,
    context: Option<&str>,
    e: &kube::config::KubeconfigError,
) -> CommandError {
    match (context, e) {
        (Some(name), kube::config::KubeconfigError::LoadContext(_)) => CommandError::no_result(
            format!("--context {name}: the kubeconfig has no context of that name"),
        ),
        _ => CommandError::no_result(format!("{source}: {}", error_chain(e))),
    }
}

pub async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Config, CommandError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                CommandError::no_result(format!("--kubeconfig: {}", error_chain(&e)))
            })?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| config_error("--kubeconfig", context, &e))?
        }
        None if context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| config_error("kubeconfig", context, &e))?,
        None => Config::infer().await.map_err(|e| {
            CommandError::no_result(format!(
                "no cluster configuration (pass --kubeconfig or set KUBECONFIG): {}",
                error_chain(&e)
            ))
        })?,
    };
    Ok(config)
}

/// A client for a configuration.
pub fn client(config: Config) -> Result<Client, CommandError> {
    crate::install_crypto_provider();
    Client::try_from(config)
        .map_err(|e| CommandError::no_result(format!("kubernetes client: {}", describe(&e))))
}

/// The client and the namespace the client commands use.
pub async fn connect(args: &ClusterArgs) -> Result<(Client, String), CommandError> {
    let config = config(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((client(config)?, namespace))
}

/// A kube error for people: the API server's message, or the transport error's causes.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => error_chain(other),
    }
}

/// The HTTP status of an error the API server answered.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// API errors: a refusal is exit 1, not reaching the server is exit 2.
pub fn api_failure(e: &kube::Error, doing: &str) -> CommandError {
    let mut message = format!("{doing}: {}", describe(e));
    if api_code(e) == Some(404) {
        message.push_str(" (is the ReportJob CRD installed? `reportjob crd | kubectl apply -f -`)");
    }
    match api_code(e) {
        Some(_) => CommandError::failed(message),
        None => CommandError::no_result(message),
    }
}

/// `ReportJob <ns>/<name> not found` (exit 1).
pub fn not_found(ns: &str, name: &str) -> CommandError {
    CommandError::failed(format!("ReportJob {ns}/{name} not found"))
}

/// Reads a ReportJob, telling a missing one apart.
pub async fn get_reportjob(
    api: &Api<ReportJob>,
    name: &str,
    ns: &str,
) -> Result<ReportJob, CommandError> {
    match api.get_opt(name).await {
        Ok(Some(rj)) => Ok(rj),
        Ok(None) => Err(not_found(ns, name)),
        Err(e) => Err(api_failure(&e, &format!("reading ReportJob {ns}/{name}"))),
    }
}
