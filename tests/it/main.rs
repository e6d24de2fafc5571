//! Every integration test of the `reportjob` crate in one binary (one link instead of one per
//! file, as xsv does), each file a module, all sharing the helpers in `common`.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

mod common;

mod ambient_env;
mod bucket;
mod chart;
mod chart_install;
mod cli_native;
mod client;
mod controller;
mod crd;
mod databases;
mod demo;
mod docs;
mod examples;
mod export_exactness;
mod failures;
mod files_safety;
mod forged_results;
mod formats;
mod formats_cluster;
mod formats_parquet;
mod formats_xlsx;
mod helm_install;
mod layers;
mod notify;
mod parameters;
mod planner;
mod pod_settings;
mod pooler;
mod rbac;
mod redirects;
mod scale;
mod schedule;
mod security;
mod snapshot;
mod spec_limits;
mod split;
mod stage_start;
mod standby;
mod value_limit;
mod worker_settings;
mod yaml_words;
