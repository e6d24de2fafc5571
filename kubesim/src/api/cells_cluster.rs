//! The cells of upstream's printers for the kinds of a cluster one installs into
//! (`pkg/printers/internalversion/printers.go`: `printService`, `printDeployment`,
//! `printReplicaSet`, `printNode`, `printPodDisruptionBudget`).

use super::cells::{created, name, s};
use super::scale::format_selector;
use serde_json::{Value, json};

fn or_none(v: String) -> Value {
    json!(if v.is_empty() { "<none>".into() } else { v })
}

/// Containers' names and images of a pod template, comma-separated (`layoutContainerCells`).
fn containers(o: &Value) -> (Value, Value) {
    let cs = o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = cs.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<String> = cs.iter().map(|c| s(&c["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE + SELECTOR.
pub fn service_cells(o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["nodePort"].as_i64() {
            Some(np) if np > 0 => format!("{}:{np}/{}", int(&p["port"]), s(&p["protocol"])),
            _ => format!("{}/{}", int(&p["port"]), s(&p["protocol"])),
        })
        .collect();
    let external: Vec<String> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    let external = match s(&spec["type"]).as_str() {
        "ExternalName" => s(&spec["externalName"]),
        _ => external.join(","),
    };
    let selector: Vec<String> = spec["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    vec![
        name(o),
        spec["type"].clone(),
        or_none(s(&spec["clusterIP"])),
        or_none(external),
        or_none(ports.join(",")),
        created(o),
        or_none(selector.join(",")),
    ]
}

/// NAME READY UP-TO-DATE AVAILABLE AGE + CONTAINERS IMAGES SELECTOR.
pub fn deployment_cells(o: &Value) -> Vec<Value> {
    let st = &o["status"];
    let (cs, images) = containers(o);
    vec![
        name(o),
        json!(format!(
            "{}/{}",
            int(&st["readyReplicas"]),
            int(&o["spec"]["replicas"])
        )),
        json!(int(&st["updatedReplicas"])),
        json!(int(&st["availableReplicas"])),
        created(o),
        cs,
        images,
        json!(format_selector(&o["spec"]["selector"])),
    ]
}

/// NAME DESIRED CURRENT READY AGE + CONTAINERS IMAGES SELECTOR.
pub fn replicaset_cells(o: &Value) -> Vec<Value> {
    let st = &o["status"];
    let (cs, images) = containers(o);
    vec![
        name(o),
        json!(int(&o["spec"]["replicas"])),
        json!(int(&st["replicas"])),
        json!(int(&st["readyReplicas"])),
        created(o),
        cs,
        images,
        json!(format_selector(&o["spec"]["selector"])),
    ]
}

/// NAME STATUS ROLES AGE VERSION + INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME.
pub fn node_cells(o: &Value) -> Vec<Value> {
    let st = &o["status"];
    let ready = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map_or("Unknown", |c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        });
    let mut status = ready.to_string();
    if o["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
        .collect();
    roles.sort();
    let address = |t: &str| {
        st["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == t)
            .map(|a| s(&a["address"]))
            .unwrap_or_default()
    };
    let info = &st["nodeInfo"];
    vec![
        name(o),
        json!(status),
        or_none(roles.join(",")),
        created(o),
        info["kubeletVersion"].clone(),
        or_none(address("InternalIP")),
        or_none(address("ExternalIP")),
        info["osImage"].clone(),
        info["kernelVersion"].clone(),
        info["containerRuntimeVersion"].clone(),
    ]
}

/// NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE.
pub fn pdb_cells(o: &Value) -> Vec<Value> {
    let shown = |v: &Value| match v {
        Value::Null => json!("N/A"),
        Value::Number(n) => json!(n.to_string()),
        other => other.clone(),
    };
    vec![
        name(o),
        shown(&o["spec"]["minAvailable"]),
        shown(&o["spec"]["maxUnavailable"]),
        json!(int(&o["status"]["disruptionsAllowed"])),
        created(o),
    ]
}
