//! kubesim: an in-process Kubernetes API server and Job runner for end-to-end tests.

pub mod runner;
