//! Images on the node: the image-to-executable mapping and the pull secrets the kubelet looks up
//! before a pull (`pkg/kubelet/kubelet_pods.go` `getPullSecretsForPod`).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;

use super::events::{Involved, Recorder};

/// Resolve an image reference through the mapping: exact, without tag/digest, or by last path component.
pub fn resolve_image(images: &[(String, PathBuf)], image: &str) -> Option<PathBuf> {
    resolve(images, image)
}

/// The same matching for any per-image value (the image's default user).
pub fn resolve<T: Clone>(images: &[(String, T)], image: &str) -> Option<T> {
    fn strip(r: &str) -> &str {
        let r = r.split('@').next().unwrap_or(r);
        match r.rfind(':') {
            Some(i) if !r[i..].contains('/') => &r[..i],
            _ => r,
        }
    }
    fn last(r: &str) -> &str {
        strip(r).rsplit('/').next().unwrap_or(r)
    }
    if let Some((_, p)) = images.iter().find(|(k, _)| k == image) {
        return Some(p.clone());
    }
    if let Some((_, p)) = images.iter().find(|(k, _)| strip(k) == strip(image)) {
        return Some(p.clone());
    }
    let by_last: Vec<_> = images
        .iter()
        .filter(|(k, _)| last(k) == last(image))
        .collect();
    match by_last.as_slice() {
        [(_, p)] => Some(p.clone()),
        _ => None,
    }
}

/// `getPullSecretsForPod` (pkg/kubelet/kubelet_pods.go): a missing pull secret is a Warning event
/// on the pod, and the pull goes ahead without it.
pub async fn warn_missing_pull_secrets(
    client: &kube::Client,
    recorder: &Recorder,
    pod: &Pod,
    ns: &str,
) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut failed = vec![];
    for r in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
    {
        // Entries with empty names were allowed by validation and are ignored.
        if r.name.is_empty() {
            continue;
        }
        if !matches!(api.get_opt(&r.name).await, Ok(Some(_))) {
            failed.push(r.name);
        }
    }
    if failed.is_empty() {
        return;
    }
    let m = &pod.metadata;
    recorder
        .event(
            &Involved {
                api_version: "v1",
                kind: "Pod",
                namespace: ns,
                name: m.name.as_deref().unwrap_or_default(),
                uid: m.uid.as_deref().unwrap_or_default(),
                resource_version: m.resource_version.as_deref().unwrap_or_default(),
            },
            "Warning",
            "FailedToRetrieveImagePullSecret",
            &format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                failed.join(", ")
            ),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_with_or_without_tag_and_by_last_component() {
        let images = vec![
            ("ghcr.io/x/reportjob".to_string(), PathBuf::from("/bin/a")),
            ("busybox:1.36".to_string(), PathBuf::from("/bin/b")),
        ];
        assert_eq!(
            resolve_image(&images, "ghcr.io/x/reportjob:0.1.0"),
            Some("/bin/a".into())
        );
        assert_eq!(resolve_image(&images, "reportjob"), Some("/bin/a".into()));
        assert_eq!(resolve_image(&images, "busybox"), Some("/bin/b".into()));
        assert_eq!(
            resolve_image(&images, "docker.io/library/busybox:latest"),
            Some("/bin/b".into())
        );
        assert_eq!(resolve_image(&images, "nginx"), None);
    }
}
