//! The representation a client asks for with `Accept: ...;as=Table|PartialObjectMetadata(List)`, applied
//! to every response that carries an object: get, list, watch events and the results of create, update,
//! patch and delete. Checked against upstream `apiserver/pkg/endpoints/handlers/response.go`
//! (`doTransformObject`: a `Status` passes through unchanged, otherwise `asPartialObjectMetadata` or
//! `asTable`) and `handlers/watch.go` (`watchEmbeddedEncoder`: every watch event's object is
//! transformed, and a Table carries its column definitions only on the first event — `NoHeaders` is set
//! after it, so later Tables have `columnDefinitions: null`).

use super::resources::ResourceInfo;
use super::table::{partial, table};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

/// What the client accepts, reduced to the representation kubesim serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Repr {
    Full,
    Table,
    Metadata,
}

/// The representation asked for by the `Accept` header.
pub fn repr(h: &HeaderMap) -> Repr {
    let a = h
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if a.contains("as=Table") {
        Repr::Table
    } else if a.contains("as=PartialObjectMetadata") {
        Repr::Metadata
    } else {
        Repr::Full
    }
}

/// One object in the representation asked for; a `Status` stays as it is.
pub fn object(ri: &ResourceInfo, o: &Value, rep: Repr) -> Value {
    if o["kind"] == json!("Status") {
        return o.clone();
    }
    match rep {
        Repr::Full => o.clone(),
        Repr::Metadata => partial(o),
        Repr::Table => {
            let rv = o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            table(ri, std::slice::from_ref(o), &rv, None)
        }
    }
}

/// The object of one watch event as a Table: with column definitions when `headers` (the first
/// event of the watch), `columnDefinitions: null` afterwards, as upstream's `NoHeaders`.
pub fn watch_table(ri: &ResourceInfo, o: &Value, headers: bool) -> Value {
    let mut t = object(ri, o, Repr::Table);
    if !headers {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_passes_through_and_objects_become_metadata() {
        let ri = super::super::resources::builtins()
            .into_iter()
            .find(|r| r.plural == "configmaps")
            .unwrap_or_else(|| panic!("configmaps are built in"));
        let s = json!({"kind": "Status", "status": "Success"});
        assert_eq!(object(&ri, &s, Repr::Metadata), s);
        let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a", "resourceVersion": "7"}, "data": {"k": "v"}});
        assert_eq!(
            object(&ri, &cm, Repr::Metadata),
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "a", "resourceVersion": "7"}})
        );
        let t = watch_table(&ri, &cm, false);
        assert_eq!(t["kind"], "Table");
        assert!(t["columnDefinitions"].is_null());
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        assert!(watch_table(&ri, &cm, true)["columnDefinitions"].is_array());
    }
}
