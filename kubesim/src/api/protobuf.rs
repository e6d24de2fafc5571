//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded into the JSON objects
//! the same request would carry as JSON, driven by upstream's `generated.proto` schemas (vendored
//! in `kubesim/proto/`, Kubernetes 1.33).
//!
//! Upstream's wire format (apimachinery `runtime/serializer/protobuf/protobuf.go`): the 4-byte magic
//! `k8s\0`, then a `runtime.Unknown` whose `typeMeta` names the kind and whose `raw` holds the
//! object's message. The object is mapped to JSON as Go's `encoding/json` would write the decoded
//! struct: proto field names are the JSON names; `json:",inline"` members are flattened; `Time` and
//! `MicroTime` become RFC 3339 strings, `Quantity` its string, `IntOrString` an int or a string,
//! `RawExtension` its embedded JSON, `bytes` base64. Zero scalars are dropped (`omitempty`), except
//! for the pointer fields listed in [`POINTER_FIELDS`] whose zero value means something.
//!
//! Over 600 lines because of its unit tests (round trips of every wire type and envelope) at its end, in `mod tests`;
//! the code itself is under 600 lines.

use super::error::{ApiError, ApiResult};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What upstream lists as accepted for a built-in kind's body (`negotiation.go` error text).
pub const BUILTIN_MEDIA_TYPES: &str =
    "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// The upstream protobuf envelope magic.
pub const MAGIC: &[u8; 4] = b"k8s\0";

const PROTOS: &[&str] = &[
    include_str!("../../proto/api_core_v1.proto"),
    include_str!("../../proto/api_batch_v1.proto"),
    include_str!("../../proto/api_rbac_v1.proto"),
    include_str!("../../proto/api_coordination_v1.proto"),
    include_str!("../../proto/api_events_v1.proto"),
    include_str!("../../proto/apimachinery_pkg_apis_meta_v1.proto"),
    include_str!("../../proto/apimachinery_pkg_api_resource.proto"),
    include_str!("../../proto/apimachinery_pkg_runtime.proto"),
    include_str!("../../proto/apimachinery_pkg_util_intstr.proto"),
];

/// Embedded structs (`json:",inline"` in upstream's Go types): their fields appear in the parent.
/// Found as the message-typed proto fields missing from the OpenAPI definition of their message.
pub(super) const INLINE_FIELDS: &[&str] = &[
    "localObjectReference",
    "volumeSource",
    "persistentVolumeSource",
    "handler",
    "ephemeralContainerCommon",
];

/// Pointer fields (`*bool`, `*int32`, `*int64` in upstream's Go types) whose zero value differs
/// from leaving them out. gogo-protobuf writes pointer fields only when set, and non-pointer fields
/// always, so a zero is kept for these names and dropped (as `omitempty` would) for the rest.
const POINTER_FIELDS: &[&str] = &[
    "immutable",
    "automountServiceAccountToken",
    "optional",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "privileged",
    "allowPrivilegeEscalation",
    "suspend",
    "manualSelector",
    "hostUsers",
    "enableServiceLinks",
    "shareProcessNamespace",
    "setHostnameAsFQDN",
    "backoffLimit",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "parallelism",
    "completions",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "terminationGracePeriodSeconds",
    "defaultMode",
    "mode",
    "priority",
    "expirationSeconds",
    "leaseDurationSeconds",
    "leaseTransitions",
];

#[derive(Debug, Clone)]
pub(super) enum Label {
    Single,
    Repeated,
    Map(String, String),
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) ty: String,
    pub(super) label: Label,
}

/// Messages by full name (`api.core.v1.Secret`), fields by number.
pub(super) type Schema = HashMap<String, HashMap<u64, Field>>;

pub(super) fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let mut all = Schema::new();
        for p in PROTOS {
            parse_proto(p, &mut all);
        }
        all
    })
}

/// Parses the regular subset of proto2 that go-to-protobuf writes: top-level messages with
/// `optional|repeated T name = N;` and `map<K, V> name = N;` fields.
fn parse_proto(src: &str, out: &mut Schema) {
    let mut package = String::new();
    let mut current: Option<(String, HashMap<u64, Field>)> = None;
    for line in src.lines().map(str::trim) {
        if let Some(p) = line.strip_prefix("package ") {
            package = p.trim_end_matches(';').to_string();
        } else if let Some(m) = line.strip_prefix("message ") {
            let name = m.trim_end_matches('{').trim();
            current = Some((format!("{package}.{name}"), HashMap::new()));
        } else if line == "}" {
            if let Some((n, f)) = current.take() {
                out.insert(n, f);
            }
        } else if let Some((_, fields)) = current.as_mut() {
            let Some((decl, num)) = line.trim_end_matches(';').split_once('=') else {
                continue;
            };
            let Ok(num) = num.trim().parse::<u64>() else {
                continue;
            };
            let decl = decl.trim();
            let resolve = |t: &str| -> String {
                if let Some(abs) = t.strip_prefix('.') {
                    abs.to_string()
                } else if is_scalar(t) {
                    t.to_string()
                } else {
                    format!("{package}.{t}")
                }
            };
            let field = if let Some(rest) = decl.strip_prefix("map<") {
                let Some((kv, name)) = rest.split_once('>') else {
                    continue;
                };
                let Some((k, v)) = kv.split_once(',') else {
                    continue;
                };
                Field {
                    name: name.trim().to_string(),
                    ty: String::new(),
                    label: Label::Map(resolve(k.trim()), resolve(v.trim())),
                }
            } else {
                let parts: Vec<&str> = decl.split_whitespace().collect();
                let [label, ty, name] = parts[..] else {
                    continue;
                };
                Field {
                    name: name.to_string(),
                    ty: resolve(ty),
                    label: if label == "repeated" {
                        Label::Repeated
                    } else {
                        Label::Single
                    },
                }
            };
            fields.insert(num, field);
        }
    }
}

pub(super) fn is_scalar(t: &str) -> bool {
    matches!(
        t,
        "string" | "bool" | "int32" | "int64" | "uint32" | "uint64" | "bytes" | "double" | "float"
    )
}

/// The proto package of an apiVersion (k8s-pb's names for the vendored files).
pub(super) fn package(api_version: &str) -> Option<&'static str> {
    Some(match api_version {
        "v1" => "api.core.v1",
        "batch/v1" => "api.batch.v1",
        "rbac.authorization.k8s.io/v1" => "api.rbac.v1",
        "coordination.k8s.io/v1" => "api.coordination.v1",
        "events.k8s.io/v1" => "api.events.v1",
        "meta.k8s.io/v1" => "apimachinery.pkg.apis.meta.v1",
        _ => return None,
    })
}

/// True when kubesim has the schema to decode (and so upstream would accept) protobuf for this
/// apiVersion/kind.
pub fn supports(api_version: &str, kind: &str) -> bool {
    package(api_version).is_some_and(|p| schema().contains_key(&format!("{p}.{kind}")))
}

/// Decodes an enveloped protobuf body into the JSON object.
pub fn decode_body(body: &[u8]) -> ApiResult<Value> {
    let bad = |m: &str| ApiError::bad_request(format!("error decoding protobuf body: {m}"));
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"))?;
    let unknown =
        decode_message(rest, "apimachinery.pkg.runtime.Unknown", 0).map_err(|e| bad(&e))?;
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let raw = raw_bytes(rest).map_err(|e| bad(&e))?;
    // A `Status` (kind Status, apiVersion v1) is meta/v1's message, and so are the options kinds,
    // which upstream registers in every group version (`metav1.AddToGroupVersion`): helm deletes
    // its release Secret with a `DeleteOptions` of apiVersion `v1`.
    let meta_kinds = [
        "Status",
        "DeleteOptions",
        "CreateOptions",
        "UpdateOptions",
        "PatchOptions",
        "GetOptions",
        "ListOptions",
    ];
    let pkg = if meta_kinds.contains(&kind.as_str()) {
        Some("apimachinery.pkg.apis.meta.v1")
    } else {
        package(&api_version)
    };
    let Some(pkg) = pkg else {
        return Err(no_kind(&api_version, &kind));
    };
    let msg = format!("{pkg}.{kind}");
    if !schema().contains_key(&msg) {
        return Err(no_kind(&api_version, &kind));
    }
    let mut obj = decode_message(&raw, &msg, 0).map_err(|e| bad(&e))?;
    if let Some(o) = obj.as_object_mut() {
        let mut out = Map::new();
        out.insert("apiVersion".into(), json!(api_version));
        out.insert("kind".into(), json!(kind));
        out.extend(std::mem::take(o));
        obj = Value::Object(out);
    }
    Ok(obj)
}

fn no_kind(api_version: &str, kind: &str) -> ApiError {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiError::bad_request(format!(
        "no kind \"{kind}\" is registered for version \"{}\" in scheme \"pkg/runtime/scheme.go:100\"",
        if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        }
    ))
}

/// The `raw` bytes (field 2) of a `runtime.Unknown`, kept binary.
fn raw_bytes(buf: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut raw = Vec::new();
    while !r.done() {
        let (num, wt) = r.key()?;
        let v = r.value(wt)?;
        if let (2, Wire::Bytes(b)) = (num, v) {
            raw = b.to_vec();
        }
    }
    Ok(raw)
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self.buf.get(self.pos..end).ok_or("truncated field")?;
        self.pos = end;
        Ok(s)
    }

    fn key(&mut self) -> Result<(u64, u8), String> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn value(&mut self, wt: u8) -> Result<Wire<'a>, String> {
        Ok(match wt {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Wire::Fixed64(u64::from_le_bytes(a))
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Wire::Fixed32(u32::from_le_bytes(a))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Wire::Bytes(self.take(n)?)
            }
            other => return Err(format!("unsupported wire type {other}")),
        })
    }
}

const MAX_DEPTH: usize = 64;

/// Decodes one message into JSON (before the special types are mapped).
fn decode_message(buf: &[u8], msg: &str, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("message nested too deeply".into());
    }
    let fields = schema()
        .get(msg)
        .ok_or_else(|| format!("unknown message {msg}"))?;
    let mut out = Map::new();
    let mut r = Reader { buf, pos: 0 };
    while !r.done() {
        let (num, wt) = r.key()?;
        let w = r.value(wt)?;
        let Some(f) = fields.get(&num) else {
            continue; // unknown fields are skipped, as gogo-protobuf does
        };
        match &f.label {
            Label::Map(kt, vt) => {
                let Wire::Bytes(entry) = w else {
                    return Err(format!("{}: map entry is not length-delimited", f.name));
                };
                let (k, v) = decode_entry(entry, kt, vt, depth)?;
                let m = out
                    .entry(f.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
            }
            Label::Repeated => {
                let arr = out
                    .entry(f.name.clone())
                    .or_insert_with(|| Value::Array(vec![]));
                let Some(arr) = arr.as_array_mut() else {
                    continue;
                };
                match (w, is_packable(&f.ty)) {
                    // packed repeated scalars
                    (Wire::Bytes(b), true) => {
                        let mut pr = Reader { buf: b, pos: 0 };
                        while !pr.done() {
                            arr.push(scalar(&f.ty, Wire::Varint(pr.varint()?))?);
                        }
                    }
                    (w, _) => arr.push(single(&f.ty, w, depth)?),
                }
            }
            Label::Single => {
                let v = single(&f.ty, w, depth)?;
                out.insert(f.name.clone(), v);
            }
        }
    }
    Ok(finish(msg, out))
}

fn is_packable(t: &str) -> bool {
    matches!(t, "bool" | "int32" | "int64" | "uint32" | "uint64")
}

fn decode_entry(buf: &[u8], kt: &str, vt: &str, depth: usize) -> Result<(String, Value), String> {
    let mut r = Reader { buf, pos: 0 };
    let mut k = String::new();
    let mut v = Value::Null;
    while !r.done() {
        let (num, wt) = r.key()?;
        let w = r.value(wt)?;
        match num {
            1 => {
                k = match scalar(kt, w)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            2 => v = single(vt, w, depth)?,
            _ => {}
        }
    }
    if v.is_null() {
        // An absent value is the zero value of its type.
        v = match vt {
            "string" | "bytes" => json!(""),
            "bool" => json!(false),
            t if is_scalar(t) => json!(0),
            t => special(t, Map::new()).unwrap_or_else(|| json!({})),
        };
    }
    Ok((k, v))
}

fn single(ty: &str, w: Wire<'_>, depth: usize) -> Result<Value, String> {
    if is_scalar(ty) {
        return scalar(ty, w);
    }
    match w {
        Wire::Bytes(b) => decode_message(b, ty, depth + 1),
        _ => Err(format!("{ty}: message is not length-delimited")),
    }
}

fn scalar(ty: &str, w: Wire<'_>) -> Result<Value, String> {
    Ok(match (ty, w) {
        ("string", Wire::Bytes(b)) => Value::String(
            std::str::from_utf8(b)
                .map_err(|_| "string field is not UTF-8")?
                .to_string(),
        ),
        ("bytes", Wire::Bytes(b)) => Value::String(base64(b)),
        ("bool", Wire::Varint(v)) => json!(v != 0),
        ("int32", Wire::Varint(v)) => json!(v as i64 as i32),
        ("int64", Wire::Varint(v)) => json!(v as i64),
        ("uint32" | "uint64", Wire::Varint(v)) => json!(v),
        ("double", Wire::Fixed64(v)) => json!(f64::from_bits(v)),
        ("float", Wire::Fixed32(v)) => json!(f32::from_bits(v)),
        (t, _) => return Err(format!("wire type does not match field type {t}")),
    })
}

/// Go's JSON for the apimachinery types that are not plain structs; `None` for ordinary messages.
fn special(msg: &str, o: Map<String, Value>) -> Option<Value> {
    let int = |k: &str| o.get(k).and_then(Value::as_i64).unwrap_or(0);
    Some(match msg {
        "apimachinery.pkg.apis.meta.v1.Time" => time(int("seconds"), int("nanos"), false),
        "apimachinery.pkg.apis.meta.v1.MicroTime" => time(int("seconds"), int("nanos"), true),
        "apimachinery.pkg.apis.meta.v1.Duration" => json!(go_duration(int("duration"))),
        "apimachinery.pkg.api.resource.Quantity" => o.get("string").cloned().unwrap_or(json!("0")),
        "apimachinery.pkg.util.intstr.IntOrString" => {
            if int("type") == 1 {
                o.get("strVal").cloned().unwrap_or(json!(""))
            } else {
                json!(int("intVal"))
            }
        }
        "apimachinery.pkg.runtime.RawExtension" | "apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let raw = o
                .get("raw")
                .or_else(|| o.get("Raw"))
                .and_then(Value::as_str)
                .and_then(unbase64)
                .unwrap_or_default();
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        }
        _ => return None,
    })
}

fn finish(msg: &str, mut o: Map<String, Value>) -> Value {
    if let Some(v) = special(msg, o.clone()) {
        return v;
    }
    let mut out = Map::new();
    for (k, v) in std::mem::take(&mut o) {
        if INLINE_FIELDS.contains(&k.as_str())
            && let Value::Object(inner) = v
        {
            out.extend(inner);
            continue;
        }
        let zero = match &v {
            Value::String(s) => s.is_empty(),
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Array(a) => a.is_empty(),
            Value::Null => true,
            Value::Object(_) => false,
        };
        let kept_zero = POINTER_FIELDS.contains(&k.as_str()) && !v.is_null();
        if zero && !kept_zero {
            continue;
        }
        out.insert(k, v);
    }
    Value::Object(out)
}

fn time(secs: i64, nanos: i64, micro: bool) -> Value {
    if secs == 0 && nanos == 0 {
        return Value::Null;
    }
    let Ok(ts) = jiff::Timestamp::new(secs, i32::try_from(nanos).unwrap_or(0)) else {
        return Value::Null;
    };
    let s = if micro {
        format!("{}Z", ts.strftime("%Y-%m-%dT%H:%M:%S%.6f"))
    } else {
        format!("{}Z", ts.strftime("%Y-%m-%dT%H:%M:%S"))
    };
    json!(s)
}

/// Go's `time.Duration.String()` for whole units (`1h2m3s`, `500ms`, `0s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        return match n {
            n if n % 1_000_000 == 0 => format!("{sign}{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{sign}{}µs", n / 1_000),
            n => format!("{sign}{n}ns"),
        };
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let s = rest as f64 / 1e9;
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h{m}m"));
    } else if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(super) fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(num: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = vec![];
        bytes_field(1, api_version.as_bytes(), &mut tm);
        bytes_field(2, kind.as_bytes(), &mut tm);
        let mut unk = vec![];
        bytes_field(1, &tm, &mut unk);
        bytes_field(2, raw, &mut unk);
        let mut out = MAGIC.to_vec();
        out.extend(unk);
        out
    }

    #[test]
    fn secret_with_data_and_metadata() {
        // ObjectMeta{name: "db", namespace: "", creationTimestamp: {}}
        let mut meta = vec![];
        bytes_field(1, b"db", &mut meta);
        bytes_field(3, b"", &mut meta);
        bytes_field(8, &[], &mut meta);
        let mut entry = vec![];
        bytes_field(1, b"url", &mut entry);
        bytes_field(2, b"postgres://x", &mut entry);
        let mut secret = vec![];
        bytes_field(1, &meta, &mut secret);
        bytes_field(2, &entry, &mut secret);
        bytes_field(3, b"Opaque", &mut secret);
        let v = decode_body(&envelope("v1", "Secret", &secret)).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                   "data": {"url": "cG9zdGdyZXM6Ly94"}, "type": "Opaque"})
        );
    }

    #[test]
    fn inline_members_quantities_and_pointer_zeros() {
        // Volume{name: "v", volumeSource: {secret: {secretName: "s", defaultMode: 0}}}
        let mut svs = vec![];
        bytes_field(1, b"s", &mut svs);
        svs.extend([3 << 3, 0]); // defaultMode = 0 (pointer: kept)
        let mut vs = vec![];
        bytes_field(6, &svs, &mut vs);
        let mut vol = vec![];
        bytes_field(1, b"v", &mut vol);
        bytes_field(2, &vs, &mut vol);
        let v = decode_message(&vol, "api.core.v1.Volume", 0).expect("decodes");
        assert_eq!(
            v,
            json!({"name": "v", "secret": {"secretName": "s", "defaultMode": 0}})
        );
        // ResourceRequirements{limits: {cpu: "500m"}}
        let mut q = vec![];
        bytes_field(1, b"500m", &mut q);
        let mut entry = vec![];
        bytes_field(1, b"cpu", &mut entry);
        bytes_field(2, &q, &mut entry);
        let mut rr = vec![];
        bytes_field(1, &entry, &mut rr);
        let v = decode_message(&rr, "api.core.v1.ResourceRequirements", 0).expect("decodes");
        assert_eq!(v, json!({"limits": {"cpu": "500m"}}));
    }

    #[test]
    fn refusals() {
        assert!(decode_body(b"{}").is_err());
        // DeleteOptions in any group version decodes as meta/v1's (propagationPolicy: field 4).
        let mut options = vec![];
        bytes_field(4, b"Background", &mut options);
        let v = decode_body(&envelope("v1", "DeleteOptions", &options)).expect("decodes");
        assert_eq!(v["kind"], "DeleteOptions");
        assert_eq!(v["propagationPolicy"], "Background");
        assert!(decode_body(&envelope("example.com/v1", "Widget", &[])).is_err());
        // a length running past the end
        let mut bad = MAGIC.to_vec();
        bad.extend([0x12, 0x50, 1]);
        assert!(decode_body(&bad).is_err());
        assert!(!supports("example.com/v1", "Widget"));
        assert!(supports("v1", "Secret"));
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(time(0, 0, false), Value::Null);
        assert_eq!(time(1_700_000_000, 0, false), json!("2023-11-14T22:13:20Z"));
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(
            unbase64(&base64(b"hello!?")).as_deref(),
            Some(&b"hello!?"[..])
        );
    }
}
