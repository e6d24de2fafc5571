//! core/v1 Services: defaults, ClusterIP allocation from the service CIDR and the rules of updates,
//! as upstream's `pkg/registry/core/service/storage/storage.go` and `ipallocator` (random addresses
//! from the dynamic band above the first 256, never one in use, the `kubernetes` Service at the
//! first address) and `pkg/apis/core/validation/validation.go` `ValidateServiceUpdate` (a set
//! ClusterIP may not change). Also the objects every cluster has: the `kubernetes` Service in
//! `default` and the one Node pods are bound to.

use super::error::{ApiError, ApiResult};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The service CIDR (kube-apiserver's `--service-cluster-ip-range` default in kind and kubeadm).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
const BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const PREFIX: u32 = 12;
/// The `kubernetes` Service's address: the first of the range (`GetIndexedIP(cidr, 1)`).
pub const KUBERNETES_IP: &str = "10.96.0.1";
/// The one node of the cluster, which every pod is bound to.
pub const NODE_NAME: &str = "kubesim";

fn size() -> u32 {
    1 << (32 - PREFIX)
}

/// Whether `ip` is an assignable address of the range (not the network or broadcast address).
fn in_range(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    n > BASE && n < BASE + size() - 1
}

/// ClusterIPs in use by the given Services.
fn used(services: &[Value]) -> HashSet<String> {
    services
        .iter()
        .flat_map(|s| {
            s["spec"]["clusterIPs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .chain(std::iter::once(s["spec"]["clusterIP"].clone()))
        })
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// A free address from the dynamic band (offsets above `min(max(16, size/16), 256)`), at random as
/// upstream's bitmap allocator picks.
fn allocate(in_use: &HashSet<String>) -> ApiResult<String> {
    use rand::Rng as _;
    let band = (size() / 16).clamp(16, 256);
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let off = rng.random_range(band + 1..size() - 1);
        let ip = Ipv4Addr::from(BASE + off).to_string();
        if !in_use.contains(&ip) {
            return Ok(ip);
        }
    }
    Err(ApiError::internal(
        "failed to allocate a serviceIP: range is full",
    ))
}

fn invalid(name: &str, field: &str, msg: String) -> ApiError {
    ApiError::invalid(
        "Service",
        "",
        "Service",
        name,
        vec![("FieldValueInvalid".into(), field.into(), msg)],
    )
}

/// Defaults (`SetDefaults_Service`, `SetDefaults_ServicePort`) and the ClusterIP of a new Service,
/// given the Services already stored.
pub fn admit_create(obj: &mut Value, existing: &[Value]) -> ApiResult<()> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec["type"].as_str().is_none_or(str::is_empty) {
        spec["type"] = json!("ClusterIP");
    }
    if spec["sessionAffinity"].as_str().is_none_or(str::is_empty) {
        spec["sessionAffinity"] = json!("None");
    }
    for p in spec["ports"].as_array_mut().into_iter().flatten() {
        if p["protocol"].as_str().is_none_or(str::is_empty) {
            p["protocol"] = json!("TCP");
        }
        if p["targetPort"].is_null() || p["targetPort"] == json!(0) || p["targetPort"] == json!("")
        {
            p["targetPort"] = p["port"].clone();
        }
    }
    if spec["type"] == "ExternalName" {
        obj["status"] = json!({"loadBalancer": {}});
        return Ok(());
    }
    if spec["internalTrafficPolicy"].is_null() {
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    let requested = spec["clusterIP"]
        .as_str()
        .or_else(|| spec["clusterIPs"][0].as_str())
        .unwrap_or_default()
        .to_string();
    let ip = match requested.as_str() {
        "" => allocate(&used(existing))?,
        "None" => "None".to_string(),
        given => {
            let bad = |why: String| {
                invalid(
                    &name,
                    "spec.clusterIPs",
                    format!(
                        "Invalid value: []string{{\"{given}\"}}: failed to allocate IP {given}: {why}"
                    ),
                )
            };
            let parsed: Ipv4Addr = given.parse().map_err(|_| {
                invalid(
                    &name,
                    "spec.clusterIPs[0]",
                    format!("Invalid value: \"{given}\": must be a valid IP address"),
                )
            })?;
            if !in_range(parsed) {
                return Err(bad(format!(
                    "the provided IP ({given}) is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"
                )));
            }
            if used(existing).contains(given) {
                return Err(bad("provided IP is already allocated".into()));
            }
            given.to_string()
        }
    };
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
    obj["status"] = json!({"loadBalancer": {}});
    Ok(())
}

/// An update keeps the allocated ClusterIP: omitted, it is carried over (`patchAllocatedValues`);
/// changed, it is refused (`ValidateServiceUpdate`: `may not change once set`).
pub fn admit_update(old: &Value, new: &mut Value) -> ApiResult<()> {
    let name = old["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(old_ip) = old["spec"]["clusterIP"].as_str().map(String::from) else {
        return Ok(());
    };
    if !new["spec"].is_object() {
        return Ok(());
    }
    let given = new["spec"]["clusterIP"]
        .as_str()
        .or_else(|| new["spec"]["clusterIPs"][0].as_str())
        .unwrap_or_default()
        .to_string();
    if given.is_empty() {
        new["spec"]["clusterIP"] = json!(old_ip);
        new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if new["spec"][f].is_null() {
                new["spec"][f] = old["spec"][f].clone();
            }
        }
        return Ok(());
    }
    // normalizeClusterIPs: a changed clusterIP with unchanged clusterIPs moves clusterIPs[0].
    let mut ips: Vec<String> = new["spec"]["clusterIPs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let old_ips = &old["spec"]["clusterIPs"];
    if ips.is_empty() || (new["spec"]["clusterIPs"] == *old_ips && given != old_ip) {
        if ips.is_empty() {
            ips.push(given.clone());
        } else {
            ips[0] = given.clone();
        }
    }
    if ips[0] != old_ip {
        let listed: Vec<String> = ips.iter().map(|i| format!("\"{i}\"")).collect();
        return Err(invalid(
            &name,
            "spec.clusterIPs[0]",
            format!(
                "Invalid value: []string{{{}}}: may not change once set",
                listed.join(", ")
            ),
        ));
    }
    new["spec"]["clusterIPs"] = json!(ips);
    Ok(())
}

/// The `kubernetes` Service in `default` as kube-apiserver's bootstrap controller keeps it
/// (`pkg/controlplane/controller/kubernetesservice`): port 443 named `https`, its target the API
/// server's secure port.
pub fn kubernetes_service(secure_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default",
        "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "sessionAffinity": "None", "clusterIP": KUBERNETES_IP,
            "clusterIPs": [KUBERNETES_IP], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}]},
        "status": {"loadBalancer": {}}})
}

/// The cluster's one Node, Ready, at 127.0.0.1 (pods are processes of this host).
pub fn node() -> Value {
    let now = super::meta::now();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v1.33.0-kubesim",
                "kubeProxyVersion": "", "containerRuntimeVersion": "kubesim://1", "osImage": "kubesim",
                "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": ""}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, ip: Option<&str>) -> Value {
        let mut s = json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}});
        if let Some(ip) = ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s
    }

    #[test]
    fn allocates_distinct_addresses_in_range_and_defaults_ports() {
        let mut stored = vec![kubernetes_service(6443)];
        for i in 0..50 {
            let mut s = svc(&format!("s{i}"), None);
            admit_create(&mut s, &stored).expect("allocated");
            let ip: Ipv4Addr = s["spec"]["clusterIP"]
                .as_str()
                .expect("ip")
                .parse()
                .expect("v4");
            assert!(in_range(ip) && u32::from(ip) > BASE + 256, "{ip}");
            assert_eq!(s["spec"]["clusterIPs"], json!([ip.to_string()]));
            assert_eq!(
                s["spec"]["ports"][0],
                json!({"port": 80, "protocol": "TCP", "targetPort": 80})
            );
            stored.push(s);
        }
        assert_eq!(used(&stored).len(), 51);
    }

    #[test]
    fn refuses_taken_and_foreign_addresses_keeps_headless() {
        let stored = vec![kubernetes_service(6443)];
        let e = admit_create(&mut svc("a", Some(KUBERNETES_IP)), &stored).expect_err("taken");
        assert_eq!(
            e.message,
            "Service \"a\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.1\"}: failed to allocate IP 10.96.0.1: provided IP is already allocated"
        );
        let e = admit_create(&mut svc("b", Some("192.168.0.1")), &stored).expect_err("range");
        assert!(
            e.message
                .ends_with("The range of valid IPs is 10.96.0.0/12"),
            "{}",
            e.message
        );
        let mut h = svc("h", Some("None"));
        admit_create(&mut h, &stored).expect("headless");
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
    }

    #[test]
    fn updates_keep_or_refuse_a_changed_cluster_ip() {
        let mut old = svc("a", None);
        admit_create(&mut old, &[]).expect("created");
        let mut omitted = svc("a", None);
        admit_update(&old, &mut omitted).expect("carried over");
        assert_eq!(omitted["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        let mut changed = svc("a", Some("10.96.7.7"));
        let e = admit_update(&old, &mut changed).expect_err("immutable");
        assert_eq!(
            e.message,
            "Service \"a\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.96.7.7\"}: may not change once set"
        );
    }
}
