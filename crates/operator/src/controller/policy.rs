//! What the platform team lets a ReportJob's author choose about stage pods, checked by the
//! controller only (`reportjob run` starts no pods): the worker image (an allowlist, by
//! default only the controller's `--worker-image`) and the service account (refused unless
//! `--allow-service-account-override`). A spec outside the policy is an `InvalidSpec`.

use reportjob_core::api::ValidSpec;
use reportjob_core::api::validate::FieldError;

/// The controller's policy on stage pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The controller's own worker image, always allowed.
    pub worker_image: String,
    /// Other images a spec may name (`--allowed-worker-images`): exact references, or
    /// prefixes ending in `*` (e.g. `registry.example/reportjob:*`).
    pub allowed_images: Vec<String>,
    /// Whether a spec may set `worker.serviceAccountName`.
    pub allow_service_account_override: bool,
    /// Whether webhook URLs and bucket endpoints may be link-local addresses (cloud
    /// metadata services; the engine's `net_guard`): told to the stage pods.
    pub allow_link_local_endpoints: bool,
}

impl Policy {
    /// Whether stage pods may run `image`.
    pub fn image_allowed(&self, image: &str) -> bool {
        image == self.worker_image
            || self
                .allowed_images
                .iter()
                .any(|allowed| match allowed.strip_suffix('*') {
                    Some(prefix) => image.starts_with(prefix),
                    None => image == allowed,
                })
    }
}

/// The fields of `spec` outside `policy`, each naming the policy that refuses it.
pub fn check(spec: &ValidSpec, policy: &Policy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(image) = &spec.worker.image
        && !policy.image_allowed(image)
    {
        let mut allowed = vec![policy.worker_image.clone()];
        allowed.extend(policy.allowed_images.iter().cloned());
        errors.push(FieldError::new(
            "spec.worker.image",
            &format!(
                "{image:?} is not an allowed worker image (the controller's \
                 --allowed-worker-images: {})",
                allowed.join(", ")
            ),
        ));
    }
    if spec.worker.service_account_name.is_some() && !policy.allow_service_account_override {
        errors.push(FieldError::new(
            "spec.worker.serviceAccountName",
            "may not be set: the controller does not allow choosing the stage pods' service \
             account (--allow-service-account-override is false); remove it",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use reportjob_core::api::load::load_str;
    use reportjob_core::api::validate::validate;

    fn spec(worker: &str) -> ValidSpec {
        let rj = load_str(
            &format!(
                "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\n\
                 metadata: {{name: r, namespace: ns}}\nspec:\n  \
                 source: {{connectionSecretRef: {{name: db}}, table: t, keyColumn: id}}\n  \
                 output: {{destination: {{pvc: {{claimName: c, path: r.csv}}}}}}\n  \
                 worker: {worker}\n"
            ),
            "test",
        )
        .expect("parses");
        validate(&rj.spec).expect("valid")
    }

    fn policy() -> Policy {
        Policy {
            worker_image: "ghcr.io/reportjob/reportjob:0.1.0".into(),
            allowed_images: vec![
                "registry.example/reportjob:1.2".into(),
                "registry.example/reportjob@sha256:*".into(),
            ],
            allow_service_account_override: false,
            allow_link_local_endpoints: false,
        }
    }

    #[test]
    fn the_default_image_and_the_allowlist_pass() {
        for worker in [
            "{}",
            "{image: 'ghcr.io/reportjob/reportjob:0.1.0'}",
            "{image: 'registry.example/reportjob:1.2'}",
            "{image: 'registry.example/reportjob@sha256:0123'}",
        ] {
            assert_eq!(check(&spec(worker), &policy()), Vec::new(), "{worker}");
        }
    }

    #[test]
    fn an_image_outside_the_allowlist_is_refused_naming_field_and_policy() {
        for image in [
            "evil.example/miner:latest",
            "registry.example/reportjob:1.3",
            "ghcr.io/reportjob/reportjob:0.1.0-evil",
        ] {
            let errors = check(&spec(&format!("{{image: '{image}'}}")), &policy());
            assert_eq!(errors.len(), 1, "{image}: {errors:?}");
            assert_eq!(errors[0].field, "spec.worker.image");
            assert!(
                errors[0].message.contains("--allowed-worker-images"),
                "{errors:?}"
            );
        }
        // With no allowlist, only the controller's own image.
        let only_own = Policy {
            allowed_images: Vec::new(),
            ..policy()
        };
        assert_eq!(
            check(
                &spec("{image: 'registry.example/reportjob:1.2'}"),
                &only_own
            )
            .len(),
            1
        );
    }

    #[test]
    fn a_service_account_is_refused_unless_the_controller_allows_it() {
        let s = spec("{serviceAccountName: cluster-admin-sa}");
        let errors = check(&s, &policy());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.worker.serviceAccountName");
        assert!(
            errors[0]
                .message
                .contains("--allow-service-account-override")
        );
        let allowing = Policy {
            allow_service_account_override: true,
            ..policy()
        };
        assert_eq!(check(&s, &allowing), Vec::new());
    }
}
