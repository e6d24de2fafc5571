//! Object metadata helpers: uids, names, timestamps and Go-style `omitempty` normalisation.

use rand::Rng;
use serde_json::Value;

/// A random RFC 4122 version-4 UID.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        (b[8] & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
}

/// The suffix `generateName` gets, from the same alphabet as upstream.
pub fn name_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = rand::rng();
    (0..5)
        .map(|_| ALPHA[r.random_range(0..ALPHA.len())] as char)
        .collect()
}

/// Now as RFC 3339 with second precision, as `metav1.Time` serialises.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Now with microseconds, as `metav1.MicroTime` serialises.
pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// Drop empty finalizers, labels, annotations and ownerReferences, and null metadata fields.
pub fn normalize(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, v| {
            !(v.is_null()
                || (matches!(
                    k.as_str(),
                    "finalizers" | "ownerReferences" | "managedFields"
                ) && v.as_array().is_some_and(|a| a.is_empty()))
                || (matches!(k.as_str(), "labels" | "annotations")
                    && v.as_object().is_some_and(|o| o.is_empty())))
        });
    }
}

/// The finalizers of an object.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Seconds elapsed since an RFC 3339 timestamp, rendered as kubectl renders ages.
pub fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    human_duration(secs)
}

/// `5s`, `3m`, `3m20s`, `2h`, `4d` like `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => {
            let (m, r) = (s / 60, s % 60);
            if r == 0 {
                format!("{m}m")
            } else {
                format!("{m}m{r}s")
            }
        }
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => {
            let (h, m) = (s / 3600, (s % 3600) / 60);
            if m == 0 {
                format!("{h}h")
            } else {
                format!("{h}h{m}m")
            }
        }
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_metadata_collections_are_omitted() {
        let mut o = json!({"metadata": {"name": "a", "finalizers": [], "labels": {}, "annotations": {"x": "y"}}});
        normalize(&mut o);
        assert_eq!(
            o,
            json!({"metadata": {"name": "a", "annotations": {"x": "y"}}})
        );
    }

    #[test]
    fn ages_render_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(180), "3m");
        assert_eq!(human_duration(7200), "120m");
        assert_eq!(human_duration(5 * 86400), "5d");
    }
}
