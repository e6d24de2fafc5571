//! What the README, `docs/` and `examples/` show can be written with kubectl: every manifest
//! in a YAML block of the README or a doc and every example file is applied with `kubectl
//! apply --dry-run=server` on the real API server with the committed CRD (kubectl reads YAML
//! 1.1, where `on` is `true`).

use std::path::Path;

use serde_json::Value;

use super::common::testbed::Env;

/// The ```yaml blocks of a Markdown text, in order.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start() == "```yaml" => current = Some(String::new()),
            Some(block) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The documents of a YAML text when every one is a Kubernetes object (`apiVersion`, `kind`).
fn manifests(yaml: &str) -> Option<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).ok()?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let all = !docs.is_empty()
        && docs
            .iter()
            .all(|d| d.get("apiVersion").is_some() && d.get("kind").is_some());
    all.then_some(docs)
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn readme_yaml_blocks_are_found() {
    let blocks = yaml_blocks("a\n```yaml\nx: 1\n```\n```sh\nls\n```\n  ```yaml\ny: 2\n  ```\n");
    assert_eq!(blocks, ["x: 1\n", "y: 2\n"]);
    assert!(manifests("kind: A\napiVersion: v1\n---\nkind: B\napiVersion: v1\n").is_some());
    assert!(manifests("- name: step\n  run: ls\n").is_none());
}

#[tokio::test]
async fn kubectl_applies_every_readme_manifest_and_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = Env::bare().await;
    // The CRDs are shared: not while a chart test has changed them.
    let crd_lock = super::common::testbed::cluster_scoped_lock().await;
    // Every CRD the docs' manifests use (the ReportDatabase's too: with only the other two,
    // the test passed only after a test that installs the chart).
    for crd in ["reportjob", "reportschedule", "reportdatabase"] {
        let crd = root.join(format!("crds/{crd}.yaml"));
        let o = env.kubectl(&["apply", "-f", crd.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
    }
    drop(crd_lock);
    // New CRDs are served once they are established.
    let o = env.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/reportjobs.reporting.dev",
        "crd/reportschedules.reporting.dev",
        "crd/reportdatabases.reporting.dev",
        "--timeout=180s",
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let mut files = Vec::new();
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    let mut in_readme = 0;
    for (d, doc) in std::iter::once(root.join("README.md"))
        .chain(docs)
        .enumerate()
    {
        let markdown = std::fs::read_to_string(&doc).unwrap();
        for (i, block) in yaml_blocks(&markdown).into_iter().enumerate() {
            if manifests(&block).is_some() {
                let f = env.dir.path().join(format!("doc-{d}-{i}.yaml"));
                std::fs::write(&f, &block).unwrap();
                files.push(f);
                in_readme += usize::from(d == 0);
            }
        }
    }
    let readme_manifests = files.len();
    assert!(in_readme >= 1, "no manifest found in README.md");
    assert!(
        readme_manifests >= 3,
        "manifests found in the README and docs: {readme_manifests}"
    );
    let mut examples: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 4, "examples: {examples:?}");
    files.extend(examples);

    let mut applied = 0;
    for f in &files {
        let text_of = std::fs::read_to_string(f).unwrap();
        let docs = manifests(&text_of).unwrap_or_else(|| panic!("{}: not manifests", f.display()));
        for ns in docs
            .iter()
            .filter_map(|d| d["metadata"]["namespace"].as_str())
        {
            // A namespace named by several documents is created once.
            let _ = env.kubectl(&["create", "namespace", ns]);
        }
        let o = env.kubectl(&["apply", "--dry-run=server", "-f", f.to_str().unwrap()]);
        let out = text(&o);
        assert!(o.status.success(), "{}: {out}", f.display());
        assert_eq!(
            out.matches("(server dry run)").count(),
            docs.len(),
            "{}: {out}",
            f.display()
        );
        applied += docs.len();
    }
    assert!(applied >= readme_manifests + 4, "applied {applied}");

    // The check can fail: kubectl reads the old key `on` as the boolean `true`.
    let old = env.dir.path().join("old-on.yaml");
    let readme_rj = files
        .iter()
        .find(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .contains("when: failure")
        })
        .expect("a documented ReportJob with notify.when");
    let body = std::fs::read_to_string(readme_rj)
        .unwrap()
        .replace("when: failure", "on: failure");
    assert!(body.contains("on: failure"));
    std::fs::write(&old, body).unwrap();
    let o = env.kubectl(&["apply", "--dry-run=server", "-f", old.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains(r#"unknown field "spec.notify.true""#),
        "{}",
        text(&o)
    );
}
