//! Completion of `kubectl reportjob <TAB>`. kubectl (1.26+) completes a plugin's words by
//! running `kubectl_complete-reportjob` with the words typed after `reportjob` (the last one
//! the word being completed, possibly empty) and reading Cobra's protocol back: one candidate
//! per line (`value<TAB>description`), then `:<directive>`. Installed or linked under that
//! name, or called as `reportjob __complete WORDS...` (the convention of Cobra-built plugins),
//! the binary answers from its own command-line definition: subcommands, flags, the values of
//! `-o` and the like, and the names of the ReportJobs (or ReportSchedules) in the namespace.

use std::time::Duration;

use clap::Command;
use kube::api::{Api, ListParams};

use super::cluster::ClusterArgs;

/// The executable name kubectl looks up for the completion of the `reportjob` plugin.
pub const COMPLETER_BINARY: &str = "kubectl_complete-reportjob";

/// The hidden first argument that asks for completions (`reportjob __complete WORDS...`).
pub const COMPLETE_ARG: &str = "__complete";

/// Cobra's `ShellCompDirectiveNoFileComp`: do not fall back to file names.
const NO_FILE_COMPLETION: u8 = 4;
/// Cobra's `ShellCompDirectiveDefault`: the shell may complete file names.
const FILE_COMPLETION: u8 = 0;

/// How long listing names from the cluster may take before completion gives up on them.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the word being completed should become.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    /// These values (with a description, possibly empty), no file names.
    Values(Vec<(String, String)>),
    /// File names (the shell completes them).
    Files,
    /// The names of the ReportJobs in the namespace, starting with the prefix.
    ReportJobNames(String),
    /// The names of the ReportSchedules in the namespace, starting with the prefix.
    ScheduleNames(String),
}

/// The words kubectl (or a shell) asks to complete, when this process was started for that:
/// as `kubectl_complete-reportjob WORDS...` or `reportjob __complete WORDS...`.
pub fn requested(args: &[std::ffi::OsString]) -> Option<Vec<String>> {
    let called = std::path::Path::new(args.first()?).file_stem()?.to_str()?;
    let words = if called == COMPLETER_BINARY {
        &args[1..]
    } else if args.get(1).is_some_and(|a| a == COMPLETE_ARG) {
        &args[2..]
    } else {
        return None;
    };
    Some(
        words
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect(),
    )
}

/// Completes the last of `words` against `root` (pure: no cluster). Returns the completion and
/// the cluster flags seen among the words, for listing names.
pub fn complete(root: &Command, words: &[String]) -> (Completion, ClusterArgs) {
    let mut root = root.clone();
    root.build();
    let (partial, done) = match words.split_last() {
        Some((last, rest)) => (last.as_str(), rest),
        None => ("", &[][..]),
    };
    let mut cluster = ClusterArgs {
        namespace: None,
        kubeconfig: None,
        context: None,
    };
    let mut cmd = &root;
    let mut positionals = 0usize;
    let mut value_of: Option<clap::Arg> = None;
    for word in done {
        if let Some(arg) = value_of.take() {
            note_cluster_flag(&mut cluster, &arg, word);
            continue;
        }
        if let Some(flag) = word.strip_prefix("--") {
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (flag, None),
            };
            if let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(name)) {
                match inline {
                    Some(value) => note_cluster_flag(&mut cluster, arg, value),
                    None if takes_value(arg) => value_of = Some(arg.clone()),
                    None => {}
                }
            }
        } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = shorts.chars();
            let first = chars.next();
            if let Some(arg) = cmd.get_arguments().find(|a| a.get_short() == first)
                && takes_value(arg)
            {
                match chars.as_str() {
                    "" => value_of = Some(arg.clone()),
                    value => note_cluster_flag(&mut cluster, arg, value.trim_start_matches('=')),
                }
            }
        } else if positionals == 0
            && let Some(sub) = cmd.find_subcommand(word)
        {
            cmd = sub;
        } else {
            positionals += 1;
        }
    }
    let completion = if let Some(arg) = value_of {
        value_completion(&arg, partial)
    } else if partial.starts_with('-') {
        Completion::Values(flags(cmd, partial))
    } else if cmd.has_subcommands() && positionals == 0 {
        Completion::Values(subcommands(cmd, partial))
    } else if positionals == 0 && takes_a_name(cmd) {
        if cmd.get_name() == "trigger" {
            Completion::ScheduleNames(partial.to_string())
        } else {
            Completion::ReportJobNames(partial.to_string())
        }
    } else {
        Completion::Values(Vec::new())
    };
    (completion, cluster)
}

/// Prints the completion in Cobra's protocol; names are listed from the cluster (nothing
/// when it cannot be reached: completion never fails loudly).
pub async fn run(words: Vec<String>) -> i32 {
    let root = crate::cli::command_named("reportjob");
    let (completion, cluster) = complete(&root, &words);
    let (values, directive) = match completion {
        Completion::Values(values) => (values, NO_FILE_COMPLETION),
        Completion::Files => (Vec::new(), FILE_COMPLETION),
        Completion::ReportJobNames(prefix) => (
            names::<crate::api::ReportJob>(&cluster, &prefix).await,
            NO_FILE_COMPLETION,
        ),
        Completion::ScheduleNames(prefix) => (
            names::<crate::schedule::ReportSchedule>(&cluster, &prefix).await,
            NO_FILE_COMPLETION,
        ),
    };
    let mut out = String::new();
    for (value, about) in values {
        out.push_str(&value);
        if !about.is_empty() {
            out.push('\t');
            out.push_str(&about);
        }
        out.push('\n');
    }
    out.push_str(&format!(":{directive}\n"));
    print!("{out}");
    crate::error::EXIT_OK
}

async fn names<K>(cluster: &ClusterArgs, prefix: &str) -> Vec<(String, String)>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let listed = tokio::time::timeout(LIST_TIMEOUT, async {
        let (client, namespace) = super::cluster::connect(cluster).await.ok()?;
        let api: Api<K> = Api::namespaced(client, &namespace);
        api.list_metadata(&ListParams::default()).await.ok()
    })
    .await
    .ok()
    .flatten();
    let mut names: Vec<(String, String)> = listed
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .filter(|n| n.starts_with(prefix))
        .map(|n| (n, String::new()))
        .collect();
    names.sort();
    names
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

fn takes_a_name(cmd: &Command) -> bool {
    cmd.get_positionals().any(|a| a.get_id() == "name")
}

fn note_cluster_flag(cluster: &mut ClusterArgs, arg: &clap::Arg, value: &str) {
    match arg.get_id().as_str() {
        "namespace" => cluster.namespace = Some(value.to_string()),
        "kubeconfig" => cluster.kubeconfig = Some(value.into()),
        "context" => cluster.context = Some(value.to_string()),
        _ => {}
    }
}

fn value_completion(arg: &clap::Arg, partial: &str) -> Completion {
    let possible = arg.get_possible_values();
    if !possible.is_empty() {
        return Completion::Values(
            possible
                .iter()
                .filter(|v| !v.is_hide_set() && v.get_name().starts_with(partial))
                .map(|v| {
                    let about = v.get_help().map(|h| h.to_string()).unwrap_or_default();
                    (v.get_name().to_string(), first_line(&about))
                })
                .collect(),
        );
    }
    match arg.get_value_hint() {
        clap::ValueHint::FilePath | clap::ValueHint::AnyPath | clap::ValueHint::DirPath => {
            Completion::Files
        }
        _ if matches!(arg.get_id().as_str(), "file" | "kubeconfig")
            || arg
                .get_value_names()
                .is_some_and(|n| n.iter().any(|n| n == "FILE")) =>
        {
            Completion::Files
        }
        _ => Completion::Values(Vec::new()),
    }
}

fn flags(cmd: &Command, partial: &str) -> Vec<(String, String)> {
    let mut flags: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let long = format!("--{}", a.get_long()?);
            let about = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            long.starts_with(partial)
                .then(|| (long, first_line(&about)))
        })
        .collect();
    for (long, about) in [("--help", "Print help")] {
        if long.starts_with(partial) && !flags.iter().any(|(f, _)| f == long) {
            flags.push((long.to_string(), about.to_string()));
        }
    }
    flags.sort();
    flags
}

fn subcommands(cmd: &Command, partial: &str) -> Vec<(String, String)> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name().starts_with(partial))
        .map(|s| {
            let about = s.get_about().map(|h| h.to_string()).unwrap_or_default();
            (s.get_name().to_string(), first_line(&about))
        })
        .collect()
}

/// The first sentence of a help text, as shells show one line per candidate.
fn first_line(help: &str) -> String {
    let line = help.lines().next().unwrap_or_default();
    match line.split_once(". ") {
        Some((first, _)) => first.to_string(),
        None => line.trim_end_matches('.').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Completion, complete, requested};

    fn words(line: &str) -> Vec<String> {
        let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        words
    }

    fn values(line: &str) -> Vec<String> {
        match complete(&crate::cli::command_named("reportjob"), &words(line)).0 {
            Completion::Values(values) => values.into_iter().map(|(v, _)| v).collect(),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn subcommands_but_not_the_stage_commands() {
        let top = values("");
        for visible in [
            "run", "submit", "list", "status", "wait", "logs", "download",
        ] {
            assert!(top.contains(&visible.to_string()), "{top:?}");
        }
        for hidden in ["worker", "assemble", "snapshot", "notify", "cleanup"] {
            assert!(!top.contains(&hidden.to_string()), "{top:?}");
        }
        assert_eq!(values("st"), ["status"]);
        assert_eq!(
            values("schedule "),
            ["list", "suspend", "resume", "trigger", "help"]
        );
    }

    #[test]
    fn flags_and_flag_values() {
        assert!(values("wait --ti").contains(&"--timeout".to_string()));
        assert_eq!(values("list -o "), ["json", "yaml", "wide", "name"]);
        assert_eq!(values("list --output y"), ["yaml"]);
        assert_eq!(values("--log-format j"), ["json"]);
        // Nothing (and no file names) for a flag's free-form value.
        assert_eq!(values("wait x --timeout "), Vec::<String>::new());
    }

    #[test]
    fn names_from_the_namespace_the_words_name() {
        let root = crate::cli::command_named("reportjob");
        let (c, cluster) = complete(&root, &words("status -n team-a or"));
        assert_eq!(c, Completion::ReportJobNames("or".into()));
        assert_eq!(cluster.namespace.as_deref(), Some("team-a"));
        let (c, cluster) = complete(&root, &words("schedule trigger --namespace=ops "));
        assert_eq!(c, Completion::ScheduleNames(String::new()));
        assert_eq!(cluster.namespace.as_deref(), Some("ops"));
        // A second positional has nothing to complete.
        let (c, _) = complete(&root, &words("status orders "));
        assert_eq!(c, Completion::Values(Vec::new()));
        let (c, _) = complete(&root, &words("submit -f "));
        assert_eq!(c, Completion::Files);
    }

    #[test]
    fn started_as_the_completer_or_with_the_hidden_argument() {
        let os = |v: &[&str]| v.iter().map(|s| s.into()).collect::<Vec<_>>();
        assert_eq!(
            requested(&os(&["/usr/bin/kubectl_complete-reportjob", "list", ""])),
            Some(vec!["list".to_string(), String::new()])
        );
        assert_eq!(
            requested(&os(&["reportjob", "__complete", "st"])),
            Some(vec!["st".to_string()])
        );
        assert_eq!(requested(&os(&["reportjob", "list"])), None);
    }
}
