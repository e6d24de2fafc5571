//! The client commands, for people and CI, talking to the Kubernetes API: [`submit`],
//! [`list`], [`status`], [`wait`], [`retry`], [`cancel`], [`suspend`], [`resume`],
//! [`schedule`], [`logs`]
//! (with [`follow_logs`]), [`download`] and [`completion`], with [`cluster`] (the one place
//! a kube client is built), [`output`], [`print`] (`-o` and the one table printer) and
//! [`progress`]; their exit codes and error type are in [`exit`]. Installed or linked as
//! `kubectl-reportjob`, the binary is a kubectl plugin, completed by [`plugin_complete`].

pub mod cancel;
pub mod cluster;
pub mod completion;
pub mod download;
pub mod duration;
pub mod exit;
pub mod follow_logs;
pub mod list;
pub mod logs;
pub mod output;
pub mod plugin_complete;
pub mod print;
pub mod progress;
pub mod resume;
pub mod retry;
pub mod schedule;
mod stage_pods;
pub mod status;
pub mod submit;
pub mod suspend;
pub mod wait;
