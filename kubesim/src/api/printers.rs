//! Server-side printing of built-in kinds as upstream's `pkg/printers/internalversion/printers.go`
//! (column definitions and cells, wide columns at priority 1, which kubectl shows only with `-o wide`)
//! and the `DefaultTableConvertor` (`Name`, `Created At`) for kinds without a printer.

use super::cells::{
    binding_cells, created, event_cells, job_cells, len_of, name, pod_cells, pvc_cells,
    quota_cells, s,
};
use super::cells_cluster::{
    deployment_cells, node_cells, pdb_cells, replicaset_cells, service_cells,
};
use super::resources::ResourceInfo;
use serde_json::{Value, json};

/// A kind's columns and how to fill a row.
pub struct Printer {
    pub columns: Vec<Value>,
    pub cells: fn(&Value) -> Vec<Value>,
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn col(name: &str, ty: &str, priority: i64, desc: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": desc, "priority": priority})
}

fn name_col() -> Value {
    col("Name", "string", 0, NAME_DOC)
}

fn age_col() -> Value {
    col("Age", "string", 0, AGE_DOC)
}

/// The printer upstream registers for a built-in kind; `None` for custom resources.
pub fn builtin(ri: &ResourceInfo) -> Option<Printer> {
    if !ri.builtin {
        return None;
    }
    let c = |n: &str, ty: &str, p: i64, d: &str| col(n, ty, p, d);
    let p = match (ri.group.as_str(), ri.plural.as_str()) {
        ("", "pods") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Ready",
                    "string",
                    0,
                    "The aggregate readiness state of this pod for accepting traffic.",
                ),
                c(
                    "Status",
                    "string",
                    0,
                    "The aggregate status of the containers in this pod.",
                ),
                c(
                    "Restarts",
                    "string",
                    0,
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                ),
                age_col(),
                c("IP", "string", 1, "podIP address allocated to the pod."),
                c(
                    "Node",
                    "string",
                    1,
                    "NodeName indicates in which node this pod is scheduled.",
                ),
                c(
                    "Nominated Node",
                    "string",
                    1,
                    "nominatedNodeName is set only when this pod preempts other pods on the node.",
                ),
                c(
                    "Readiness Gates",
                    "string",
                    1,
                    "If specified, all readiness gates will be evaluated for pod readiness.",
                ),
            ],
            cells: pod_cells,
        },
        ("batch", "jobs") => Printer {
            columns: vec![
                name_col(),
                c("Status", "string", 0, "Status of the job."),
                c(
                    "Completions",
                    "string",
                    0,
                    "The number of pods which reached phase Succeeded.",
                ),
                c(
                    "Duration",
                    "string",
                    0,
                    "Time required to complete the job.",
                ),
                age_col(),
                c(
                    "Containers",
                    "string",
                    1,
                    "Names of each container in the template.",
                ),
                c(
                    "Images",
                    "string",
                    1,
                    "Images referenced by each container in the template.",
                ),
                c(
                    "Selector",
                    "string",
                    1,
                    "A label query over pods that should match the pod count.",
                ),
            ],
            cells: job_cells,
        },
        ("", "events") | ("events.k8s.io", "events") => Printer {
            columns: vec![
                c(
                    "Last Seen",
                    "string",
                    0,
                    "The time at which the most recent occurrence of this event was recorded.",
                ),
                c(
                    "Type",
                    "string",
                    0,
                    "Type of this event (Normal, Warning), new types could be added in the future",
                ),
                c(
                    "Reason",
                    "string",
                    0,
                    "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                ),
                c(
                    "Object",
                    "string",
                    0,
                    "The object that this event is about.",
                ),
                c(
                    "Subobject",
                    "string",
                    1,
                    "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
                ),
                c(
                    "Source",
                    "string",
                    1,
                    "The component reporting this event. Should be a short machine understandable string.",
                ),
                c(
                    "Message",
                    "string",
                    0,
                    "A human-readable description of the status of this operation.",
                ),
                c(
                    "First Seen",
                    "string",
                    1,
                    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
                ),
                c(
                    "Count",
                    "string",
                    1,
                    "The number of times this event has occurred.",
                ),
                {
                    let mut n = name_col();
                    n["priority"] = json!(1);
                    n
                },
            ],
            cells: event_cells,
        },
        ("", "namespaces") => Printer {
            columns: vec![
                name_col(),
                c("Status", "string", 0, "The status of the namespace"),
                age_col(),
            ],
            cells: |o| vec![name(o), o["status"]["phase"].clone(), created(o)],
        },
        ("", "secrets") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Type",
                    "string",
                    0,
                    "Used to facilitate programmatic handling of secret data.",
                ),
                c("Data", "string", 0, "Data contains the secret data."),
                age_col(),
            ],
            cells: |o| {
                vec![
                    name(o),
                    o["type"].clone(),
                    json!(len_of(&o["data"])),
                    created(o),
                ]
            },
        },
        ("", "configmaps") => Printer {
            columns: vec![
                name_col(),
                c("Data", "string", 0, "Data contains the configuration data."),
                age_col(),
            ],
            cells: |o| {
                vec![
                    name(o),
                    json!(len_of(&o["data"]) + len_of(&o["binaryData"])),
                    created(o),
                ]
            },
        },
        ("", "serviceaccounts") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Secrets",
                    "string",
                    0,
                    "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                ),
                age_col(),
            ],
            cells: |o| vec![name(o), json!(len_of(&o["secrets"])), created(o)],
        },
        ("", "persistentvolumeclaims") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Status",
                    "string",
                    0,
                    "phase represents the current phase of PersistentVolumeClaim.",
                ),
                c(
                    "Volume",
                    "string",
                    0,
                    "volumeName is the binding reference to the PersistentVolume backing this claim.",
                ),
                c(
                    "Capacity",
                    "string",
                    0,
                    "capacity represents the actual resources of the underlying volume.",
                ),
                c(
                    "Access Modes",
                    "string",
                    0,
                    "accessModes contains the actual access modes the volume backing the PVC has.",
                ),
                c("StorageClass", "string", 0, "StorageClass of the pvc"),
                c(
                    "VolumeAttributesClass",
                    "string",
                    0,
                    "VolumeAttributesClass of the pvc",
                ),
                age_col(),
                c(
                    "VolumeMode",
                    "string",
                    1,
                    "volumeMode defines what type of volume is required by the claim.",
                ),
            ],
            cells: pvc_cells,
        },
        ("", "resourcequotas") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Request",
                    "string",
                    0,
                    "Request represents a minimum amount of cpu/memory that a container may consume.",
                ),
                c(
                    "Limit",
                    "string",
                    0,
                    "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
                ),
                age_col(),
            ],
            cells: quota_cells,
        },
        ("coordination.k8s.io", "leases") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Holder",
                    "string",
                    0,
                    "holderIdentity contains the identity of the holder of a current lease.",
                ),
                age_col(),
            ],
            cells: |o| vec![name(o), json!(s(&o["spec"]["holderIdentity"])), created(o)],
        },
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Role",
                    "string",
                    0,
                    "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
                ),
                age_col(),
                c("Users", "string", 1, "Users in the roleBinding"),
                c("Groups", "string", 1, "Groups in the roleBinding"),
                c(
                    "ServiceAccounts",
                    "string",
                    1,
                    "ServiceAccounts in the roleBinding",
                ),
            ],
            cells: binding_cells,
        },
        ("", "services") => Printer {
            columns: vec![
                name_col(),
                c("Type", "string", 0, "The type of service."),
                c("Cluster-IP", "string", 0, "The cluster ip."),
                c("External-IP", "string", 0, "The external ip."),
                c("Port(s)", "string", 0, "The ports of service."),
                age_col(),
                c("Selector", "string", 1, "The selector of service."),
            ],
            cells: service_cells,
        },
        ("apps", "deployments") => Printer {
            columns: vec![
                name_col(),
                c("Ready", "string", 0, "Number of the pod with ready state"),
                c(
                    "Up-to-date",
                    "string",
                    0,
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                c(
                    "Available",
                    "string",
                    0,
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                age_col(),
                c(
                    "Containers",
                    "string",
                    1,
                    "Names of each container in the template.",
                ),
                c(
                    "Images",
                    "string",
                    1,
                    "Images referenced by each container in the template.",
                ),
                c(
                    "Selector",
                    "string",
                    1,
                    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
                ),
            ],
            cells: deployment_cells,
        },
        ("apps", "replicasets") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Desired",
                    "integer",
                    0,
                    "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1.",
                ),
                c(
                    "Current",
                    "integer",
                    0,
                    "Replicas is the most recently observed number of replicas.",
                ),
                c(
                    "Ready",
                    "integer",
                    0,
                    "The number of ready replicas for this replica set.",
                ),
                age_col(),
                c(
                    "Containers",
                    "string",
                    1,
                    "Names of each container in the template.",
                ),
                c(
                    "Images",
                    "string",
                    1,
                    "Images referenced by each container in the template.",
                ),
                c(
                    "Selector",
                    "string",
                    1,
                    "Selector is a label query over pods that should match the replica count.",
                ),
            ],
            cells: replicaset_cells,
        },
        ("", "nodes") => Printer {
            columns: vec![
                name_col(),
                c("Status", "string", 0, "The status of the node"),
                c("Roles", "string", 0, "The roles of the node"),
                age_col(),
                c(
                    "Version",
                    "string",
                    0,
                    "Kubelet Version reported by the node.",
                ),
                c(
                    "Internal-IP",
                    "string",
                    1,
                    "List of addresses reachable to the node. Queried from cloud provider, if available.",
                ),
                c(
                    "External-IP",
                    "string",
                    1,
                    "List of addresses reachable to the node. Queried from cloud provider, if available.",
                ),
                c(
                    "OS-Image",
                    "string",
                    1,
                    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                ),
                c(
                    "Kernel-Version",
                    "string",
                    1,
                    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                ),
                c(
                    "Container-Runtime",
                    "string",
                    1,
                    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                ),
            ],
            cells: node_cells,
        },
        ("policy", "poddisruptionbudgets") => Printer {
            columns: vec![
                name_col(),
                c(
                    "Min Available",
                    "string",
                    0,
                    "The minimum number of pods that must be available simultaneously",
                ),
                c(
                    "Max Unavailable",
                    "string",
                    0,
                    "The maximum number of pods that may be unavailable simultaneously",
                ),
                c(
                    "Allowed Disruptions",
                    "integer",
                    0,
                    "Calculated number of pods that may be disrupted at this time",
                ),
                age_col(),
            ],
            cells: pdb_cells,
        },
        // No printer upstream (limitranges, roles, clusterroles, CRDs): rest.DefaultTableConvertor.
        _ => Printer {
            columns: vec![name_col(), col("Created At", "date", 0, AGE_DOC)],
            cells: |o| vec![name(o), o["metadata"]["creationTimestamp"].clone()],
        },
    };
    Some(p)
}
