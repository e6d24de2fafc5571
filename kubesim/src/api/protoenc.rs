//! Protobuf responses (`Accept: application/vnd.kubernetes.protobuf`) for built-in kinds: the JSON object
//! encoded as upstream's serializer writes it (apimachinery `runtime/serializer/protobuf/protobuf.go`): the
//! `k8s\0` magic, then a `runtime.Unknown` with `typeMeta{apiVersion, kind}`, `raw` (the object's message
//! from the vendored `generated.proto`), and empty `contentEncoding`/`contentType`. The inverse of
//! `protobuf::decode_body`: inline members are gathered from the flattened JSON, `Time`/`MicroTime` become
//! seconds and nanos, `Quantity` its string, `IntOrString` its type and value, `RawExtension`/`FieldsV1`
//! the JSON bytes, `bytes` the base64-decoded data; fields go in field-number order, map entries sorted by
//! key, as gogo-protobuf's generated marshallers write them.

use super::protobuf::{INLINE_FIELDS, Label, MAGIC, is_scalar, package, schema, unbase64};
use serde_json::Value;

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

fn key(num: u64, wire: u64, out: &mut Vec<u8>) {
    varint(num << 3 | wire, out);
}

fn bytes_field(num: u64, b: &[u8], out: &mut Vec<u8>) {
    key(num, 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// The message name a kind's object (or list) is encoded with; `Status` lives in meta/v1.
fn message_for(api_version: &str, kind: &str) -> Option<String> {
    let pkg = if kind == "Status" {
        "apimachinery.pkg.apis.meta.v1"
    } else {
        package(api_version)?
    };
    let msg = format!("{pkg}.{kind}");
    schema().contains_key(&msg).then_some(msg)
}

/// The enveloped protobuf form of a built-in object, list or Status; `None` when kubesim has no schema
/// for its kind (upstream registers protobuf only for compiled-in types).
pub fn encode_object(obj: &Value) -> Option<Vec<u8>> {
    let api_version = obj["apiVersion"].as_str()?;
    let kind = obj["kind"].as_str()?;
    let msg = message_for(api_version, kind)?;
    let mut raw = Vec::new();
    encode_message(obj, &msg, &mut raw, 0)?;
    let mut tm = Vec::new();
    bytes_field(1, api_version.as_bytes(), &mut tm);
    bytes_field(2, kind.as_bytes(), &mut tm);
    let mut unknown = Vec::new();
    bytes_field(1, &tm, &mut unknown);
    bytes_field(2, &raw, &mut unknown);
    bytes_field(3, b"", &mut unknown);
    bytes_field(4, b"", &mut unknown);
    let mut out = MAGIC.to_vec();
    out.extend(unknown);
    Some(out)
}

/// RFC 3339 to (seconds, nanos).
fn timestamp(s: &str) -> Option<(i64, i64)> {
    let t: jiff::Timestamp = s.parse().ok()?;
    Some((t.as_second(), i64::from(t.subsec_nanosecond())))
}

/// The special apimachinery types; `None` for ordinary messages.
fn special(v: &Value, msg: &str, out: &mut Vec<u8>) -> Option<bool> {
    match msg {
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let (secs, nanos) = v.as_str().and_then(timestamp).unwrap_or((0, 0));
            key(1, 0, out);
            varint(secs as u64, out);
            key(2, 0, out);
            varint(nanos as u64, out);
        }
        "apimachinery.pkg.api.resource.Quantity" => {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            bytes_field(1, s.as_bytes(), out);
        }
        "apimachinery.pkg.util.intstr.IntOrString" => match v {
            Value::String(s) => {
                key(1, 0, out);
                varint(1, out);
                key(2, 0, out);
                varint(0, out);
                bytes_field(3, s.as_bytes(), out);
            }
            other => {
                key(1, 0, out);
                varint(0, out);
                key(2, 0, out);
                varint(other.as_i64().unwrap_or(0) as u64, out);
                bytes_field(3, b"", out);
            }
        },
        "apimachinery.pkg.runtime.RawExtension" | "apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            bytes_field(1, v.to_string().as_bytes(), out);
        }
        _ => return None,
    }
    Some(true)
}

fn scalar(ty: &str, num: u64, v: &Value, out: &mut Vec<u8>) -> Option<()> {
    match ty {
        "string" => bytes_field(num, v.as_str()?.as_bytes(), out),
        "bytes" => bytes_field(num, &unbase64(v.as_str()?)?, out),
        "bool" => {
            key(num, 0, out);
            varint(u64::from(v.as_bool()?), out);
        }
        // Negative int32/int64 are sign-extended to ten bytes, as protobuf requires.
        "int32" | "int64" => {
            key(num, 0, out);
            varint(v.as_i64()? as u64, out);
        }
        "uint32" | "uint64" => {
            key(num, 0, out);
            varint(v.as_u64()?, out);
        }
        "double" => {
            key(num, 1, out);
            out.extend_from_slice(&v.as_f64()?.to_le_bytes());
        }
        "float" => {
            key(num, 5, out);
            #[allow(clippy::cast_possible_truncation)] // a float field holds an f32
            out.extend_from_slice(&(v.as_f64()? as f32).to_le_bytes());
        }
        _ => return None,
    }
    Some(())
}

fn value(ty: &str, num: u64, v: &Value, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if is_scalar(ty) {
        return scalar(ty, num, v, out);
    }
    let mut inner = Vec::new();
    encode_message(v, ty, &mut inner, depth + 1)?;
    bytes_field(num, &inner, out);
    Some(())
}

fn encode_message(v: &Value, msg: &str, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth > 64 {
        return None;
    }
    if special(v, msg, out).is_some() {
        return Some(());
    }
    let fields = schema().get(msg)?;
    let mut nums: Vec<&u64> = fields.keys().collect();
    nums.sort();
    for num in nums {
        let f = &fields[num];
        // An embedded (inline) struct reads its fields from the same JSON object.
        if INLINE_FIELDS.contains(&f.name.as_str()) && !is_scalar(&f.ty) {
            value(&f.ty, *num, v, out, depth)?;
            continue;
        }
        let Some(fv) = v.get(&f.name).filter(|x| !x.is_null()) else {
            continue;
        };
        match &f.label {
            Label::Single => value(&f.ty, *num, fv, out, depth)?,
            Label::Repeated => {
                for item in fv.as_array()? {
                    value(&f.ty, *num, item, out, depth)?;
                }
            }
            Label::Map(kt, vt) => {
                let m = fv.as_object()?;
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for k in keys {
                    let mut entry = Vec::new();
                    scalar(kt, 1, &Value::String(k.clone()), &mut entry)?;
                    value(vt, 2, &m[k], &mut entry, depth)?;
                    bytes_field(*num, &entry, out);
                }
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protobuf::decode_body;
    use serde_json::json;

    #[test]
    fn encoding_round_trips_through_the_decoder() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d", "labels": {"b": "2", "a": "1"},
                "creationTimestamp": "2025-01-02T03:04:05Z", "resourceVersion": "7"},
            "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": 0, "fsGroup": 2000},
                "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}],
                "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "true"],
                    "resources": {"limits": {"cpu": "500m"}},
                    "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
            "status": {"phase": "Pending", "qosClass": "Burstable"}});
        let bytes = encode_object(&pod).unwrap_or_default();
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(decode_body(&bytes).ok(), Some(pod));
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "type": "Opaque", "data": {"k": "aGVsbG8="}});
        assert_eq!(
            decode_body(&encode_object(&secret).unwrap_or_default()).ok(),
            Some(secret)
        );
        let list = json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "9"},
            "items": [{"metadata": {"name": "j"}, "spec": {"backoffLimit": 0, "template": {"spec": {"containers": []}}}}]});
        let back = decode_body(&encode_object(&list).unwrap_or_default()).unwrap_or_default();
        assert_eq!(back["items"][0]["spec"]["backoffLimit"], 0);
        assert_eq!(back["metadata"]["resourceVersion"], "9");
        let custom =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        assert!(
            encode_object(&custom).is_none(),
            "no protobuf for custom resources"
        );
    }
}
