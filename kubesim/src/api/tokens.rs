//! Service-account tokens: TokenRequest (`POST serviceaccounts/<name>/token`) and the bearer-token
//! authenticator. As upstream's `pkg/serviceaccount/jwt.go` and `claims.go`, a token is a JWT whose
//! claims name the issuer, audiences, expiry and, under `kubernetes.io`, the namespace, the service
//! account (name and uid) and the object it is bound to (a pod); it authenticates as
//! `system:serviceaccount:<ns>:<name>` with the groups `system:serviceaccounts`,
//! `system:serviceaccounts:<ns>` and `system:authenticated`, only while it is unexpired, the service
//! account still exists with the same uid and a bound pod still exists with the same uid
//! (`validator.Validate`). kubesim signs with HS256 and a key made at start; upstream signs with the
//! issuer's RSA or ECDSA key (the difference is invisible to clients, which treat tokens as opaque).

use super::error::{ApiError, ApiResult};
use super::rbac::UserInfo;
use super::store::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

/// The service-account issuer (and default API audience) of kind and kubeadm clusters.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// `TokenRequestSpec.expirationSeconds` default (`SetDefaults_TokenRequestSpec`).
const DEFAULT_EXPIRATION: i64 = 3600;
/// The shortest allowed (`ValidateTokenRequest`: "may not specify a duration less than 10 minutes").
const MIN_EXPIRATION: i64 = 600;

fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

fn sign(key: &[u8], data: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    B64.encode(ring::hmac::sign(&k, data.as_bytes()).as_ref())
}

/// A signed token for `claims`.
fn encode(key: &[u8], claims: &Value) -> String {
    let header = B64.encode(json!({"alg": "HS256", "kid": "kubesim"}).to_string());
    let body = B64.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let sig = sign(key, &signed);
    format!("{signed}.{sig}")
}

/// The claims of a token signed with `key`, or `None` when it is not one.
fn decode(key: &[u8], token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (h, b, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let sig = B64.decode(s).ok()?;
    ring::hmac::verify(&k, format!("{h}.{b}").as_bytes(), &sig).ok()?;
    serde_json::from_slice(&B64.decode(b).ok()?).ok()
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// `POST serviceaccounts/<name>/token`: a token for the service account, bound to the object in
/// `spec.boundObjectRef` (a Pod, which must exist with the given uid), answered as a TokenRequest
/// with `status.token` and `status.expirationTimestamp`.
pub fn token_request(st: &State, ns: &str, sa_name: &str, body: &Value) -> ApiResult<Value> {
    let sa_ri = st
        .find("", "serviceaccounts")
        .cloned()
        .ok_or_else(|| ApiError::internal("no serviceaccounts"))?;
    let sa = st.get(&sa_ri, ns, sa_name)?;
    let spec = &body["spec"];
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        v => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds: must be an integer"))?,
    };
    let invalid = |field: &str, msg: String| {
        ApiError::invalid(
            "TokenRequest.authentication.k8s.io",
            "authentication.k8s.io",
            "TokenRequest",
            sa_name,
            vec![("FieldValueInvalid".into(), field.into(), msg)],
        )
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![ISSUER.to_string()]);
    let now = unix_now();
    let mut k8s =
        json!({"namespace": ns, "serviceaccount": {"name": sa_name, "uid": sa["metadata"]["uid"]}});
    let bound = &spec["boundObjectRef"];
    if bound.is_object() {
        let kind = bound["kind"].as_str().unwrap_or_default();
        let name = bound["name"].as_str().unwrap_or_default();
        if kind != "Pod" {
            return Err(invalid(
                "spec.boundObjectRef.kind",
                format!("Unsupported value: \"{kind}\": supported values: \"Pod\""),
            ));
        }
        let pod_ri = st
            .find("", "pods")
            .cloned()
            .ok_or_else(|| ApiError::internal("no pods"))?;
        let pod = st.get(&pod_ri, ns, name)?;
        if let Some(uid) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && pod["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    pod["metadata"]["uid"].as_str().unwrap_or_default()
                ),
            ));
        }
        k8s["pod"] = json!({"name": name, "uid": pod["metadata"]["uid"]});
    }
    let claims = json!({
        "aud": audiences, "exp": now + expiration, "iat": now, "nbf": now, "iss": ISSUER,
        "jti": super::meta::new_uid(), "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{ns}:{sa_name}"),
    });
    let token = encode(&st.signing_key, &claims);
    let expires = jiff::Timestamp::from_second(now + expiration)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut out_spec = spec.clone();
    if !out_spec.is_object() {
        out_spec = json!({});
    }
    out_spec["audiences"] = json!(audiences);
    out_spec["expirationSeconds"] = json!(expiration);
    Ok(json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": sa_name, "namespace": ns, "creationTimestamp": null},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

/// The bearer token of a request's `Authorization` header, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The user a bearer token authenticates as, or 401 `Unauthorized`.
pub fn authenticate(st: &State, token: &str) -> ApiResult<UserInfo> {
    let claims = decode(&st.signing_key, token).ok_or_else(unauthorized)?;
    if claims["exp"].as_i64().is_none_or(|e| e <= unix_now()) {
        return Err(unauthorized());
    }
    let aud_ok = claims["aud"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == ISSUER));
    if !aud_ok {
        return Err(unauthorized());
    }
    let k8s = &claims["kubernetes.io"];
    let ns = k8s["namespace"].as_str().ok_or_else(unauthorized)?;
    let name = k8s["serviceaccount"]["name"]
        .as_str()
        .ok_or_else(unauthorized)?;
    let live = |plural: &str, n: &str, uid: &Value| {
        st.find("", plural)
            .and_then(|ri| st.get(ri, ns, n).ok())
            .is_some_and(|o| {
                o["metadata"]["deletionTimestamp"].is_null() && &o["metadata"]["uid"] == uid
            })
    };
    if !live("serviceaccounts", name, &k8s["serviceaccount"]["uid"]) {
        return Err(unauthorized());
    }
    if let Some(pod) = k8s["pod"]["name"].as_str()
        && !live("pods", pod, &k8s["pod"]["uid"])
    {
        return Err(unauthorized());
    }
    Ok(UserInfo::impersonated(
        &format!("system:serviceaccount:{ns}:{name}"),
        &[],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key_and_unaltered() {
        let claims = json!({"sub": "system:serviceaccount:a:b", "exp": 1});
        let t = encode(b"key-1", &claims);
        assert_eq!(decode(b"key-1", &t), Some(claims.clone()));
        assert_eq!(decode(b"key-2", &t), None);
        let mut parts: Vec<&str> = t.split('.').collect();
        let other =
            B64.encode(json!({"sub": "system:serviceaccount:kube-system:admin"}).to_string());
        parts[1] = &other;
        assert_eq!(decode(b"key-1", &parts.join(".")), None);
    }
}
