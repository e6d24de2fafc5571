//! The crates' layers, as their manifests declare them: the compiler keeps a crate from
//! using what its manifest does not name, so these checks keep the manifests honest. The
//! core has no I/O client; the engine no Kubernetes; the operator no database, store or
//! HTTP client, and not the engine.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

/// The names of the `[dependencies]` of the manifest at `path` (from the repository root).
fn dependencies(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut names = Vec::new();
    let mut in_dependencies = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap().trim();
            names.push(name.to_string());
        }
    }
    assert!(!names.is_empty(), "{path} declares no dependencies");
    names
}

fn assert_none_of(path: &str, forbidden: &[&str]) {
    let deps = dependencies(path);
    let found: Vec<&String> = deps
        .iter()
        .filter(|d| forbidden.contains(&d.as_str()))
        .collect();
    assert!(found.is_empty(), "{path} depends on {found:?}");
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    assert_none_of(
        "crates/core/Cargo.toml",
        &[
            "reportjob-engine",
            "reportjob-operator",
            "sqlx",
            "object_store",
            "reqwest",
            "tokio",
        ],
    );
    assert!(
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/core/Cargo.toml"
        ))
        .unwrap()
        .contains(r#"kube = { version = "5", default-features = false, features = ["derive"] }"#),
        "the core takes kube's derive only, never its client"
    );
    assert_none_of(
        "crates/engine/Cargo.toml",
        &[
            "reportjob-operator",
            "kube",
            "k8s-openapi",
            "kube-lease-manager",
        ],
    );
    assert_none_of(
        "crates/operator/Cargo.toml",
        &[
            "reportjob-engine",
            "sqlx",
            "object_store",
            "reqwest",
            "parquet",
        ],
    );
    // The operator's own dependencies are what the controller needs, and it has them.
    let operator = dependencies("crates/operator/Cargo.toml");
    assert!(operator.iter().any(|d| d == "kube"), "{operator:?}");
    assert!(
        operator.iter().any(|d| d == "reportjob-core"),
        "{operator:?}"
    );
}
