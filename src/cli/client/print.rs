//! `-o json|yaml|wide|name`: ReportJobs printed as kubectl prints them (the object, a `List`,
//! `reportjob.reporting.dev/NAME`, or a table of the CRD's printer columns with upstream's
//! ages), for `list`, `status`, `submit` and `wait`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::exit::CommandError;
use crate::api::ReportJob;
use crate::api::conditions::COMPLETE;

/// How a command prints ReportJobs (`-o`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The object as JSON (a `List` of them for several).
    Json,
    /// The object as YAML (a `List` of them for several).
    Yaml,
    /// The table with the extra columns Output, Reason and Message.
    Wide,
    /// `reportjob.reporting.dev/NAME`, one a line.
    Name,
}

/// Whether `c` would act on a terminal instead of showing: control characters (C0, DEL, C1,
/// ESC among them) and the bidirectional overrides that reorder what follows them.
fn acts_on_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` as it may be printed on a terminal: each character of [`acts_on_terminal`]
/// written as an escape (`\n`, `\t`, `\r`, `\u{1b}`), so that a value written by someone
/// else (a status, an event) cannot start a line, forge a row or colour the output.
pub fn for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(acts_on_terminal) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if acts_on_terminal(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `value` with every string in it passed through [`for_terminal`] (an object read from the
/// API, before it is rendered as text).
pub fn for_terminal_object<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone,
{
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) => {
                if let std::borrow::Cow::Owned(safe) = for_terminal(s) {
                    *s = safe;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut json) = serde_json::to_value(value) else {
        return value.clone();
    };
    walk(&mut json);
    serde_json::from_value(json).unwrap_or_else(|_| value.clone())
}

/// `reportjob.reporting.dev/NAME`, as `kubectl get -o name`.
pub fn resource_name(rj: &ReportJob) -> String {
    format!("reportjob.reporting.dev/{}", rj.name_any())
}

/// The object as kubectl's `-o json` prints it: two-space indented, with a final newline.
pub(super) fn json_text(value: &Value) -> Result<String, CommandError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| CommandError::failed(format!("cannot print JSON: {e}")))
}

pub(super) fn yaml_text(value: &Value) -> Result<String, CommandError> {
    serde_saphyr::to_string(value)
        .map_err(|e| CommandError::failed(format!("cannot print YAML: {e}")))
}

/// ReportJobs printed in `format` (`None`: the default table). One object is printed as
/// itself, several (or none, from `list`) as a `List`; `all_namespaces` adds a NAMESPACE
/// column to tables.
pub fn render(
    items: &[ReportJob],
    format: Option<Format>,
    as_list: bool,
    all_namespaces: bool,
) -> Result<String, CommandError> {
    let value = || -> Result<Value, CommandError> {
        let objects = items
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CommandError::failed(format!("cannot print: {e}")))?;
        Ok(match (as_list, objects.as_slice()) {
            (false, [one]) => one.clone(),
            _ => json!({"apiVersion": "v1", "kind": "List", "items": objects,
                        "metadata": {"resourceVersion": ""}}),
        })
    };
    match format {
        Some(Format::Json) => json_text(&value()?),
        Some(Format::Yaml) => yaml_text(&value()?),
        Some(Format::Name) => Ok(items.iter().map(|r| resource_name(r) + "\n").collect()),
        Some(Format::Wide) => Ok(table(items, true, all_namespaces, jiff::Timestamp::now())),
        None => Ok(table(items, false, all_namespaces, jiff::Timestamp::now())),
    }
}

/// The cells of the CRD's printer columns (and the name), as the API server fills them.
fn cells(rj: &ReportJob, wide: bool, now: jiff::Timestamp) -> Vec<String> {
    let status = rj.status.clone().unwrap_or_default();
    let mut row = vec![
        rj.name_any(),
        status
            .phase
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        status.progress.clone().unwrap_or_default(),
        status.rows.map(|r| r.to_string()).unwrap_or_default(),
        rj.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| kube_age(now.duration_since(t.0).as_secs()))
            .unwrap_or_else(|| "<unknown>".to_string()),
    ];
    if wide {
        row.push(
            status
                .output
                .as_ref()
                .map(|o| o.location.clone())
                .unwrap_or_default(),
        );
        row.push(
            status
                .conditions
                .iter()
                .find(|c| c.type_ == COMPLETE)
                .map(|c| c.reason.clone())
                .unwrap_or_default(),
        );
        row.push(status.message.clone().unwrap_or_default());
    }
    row
}

/// The table kubectl prints for ReportJobs: upper-case headers, columns three spaces apart.
pub fn table(
    items: &[ReportJob],
    wide: bool,
    all_namespaces: bool,
    now: jiff::Timestamp,
) -> String {
    let mut header: Vec<String> = ["NAME", "PHASE", "CHUNKS", "ROWS", "AGE"]
        .map(String::from)
        .to_vec();
    if wide {
        header.extend(["OUTPUT", "REASON", "MESSAGE"].map(String::from));
    }
    let mut rows = vec![header];
    for rj in items {
        rows.push(cells(rj, wide, now));
    }
    if all_namespaces {
        rows[0].insert(0, "NAMESPACE".into());
        for (row, rj) in rows.iter_mut().skip(1).zip(items) {
            row.insert(0, rj.namespace().unwrap_or_default());
        }
    }
    aligned(&rows, "", 3)
}

/// The table of ReportSchedules `list` prints after the ReportJobs: the CRD's printer
/// columns, with times as ages (and the next run as `in 5m`).
pub fn schedule_table(
    items: &[crate::schedule::ReportSchedule],
    all_namespaces: bool,
    now: jiff::Timestamp,
) -> String {
    let since = |t: Option<&Time>| {
        t.map_or_else(
            || "<none>".to_string(),
            |t| kube_age(now.duration_since(t.0).as_secs()),
        )
    };
    let until = |t: Option<&Time>| {
        t.map_or_else(
            || "<none>".to_string(),
            |t| format!("in {}", kube_age(t.0.duration_since(now).as_secs().max(0))),
        )
    };
    let mut rows = vec![
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "READY",
            "NEXT",
            "AGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for rs in items {
        let status = rs.status.clone().unwrap_or_default();
        let active: Vec<String> = status
            .active
            .iter()
            .filter_map(|r| r.name.clone())
            .collect();
        let mut row = vec![
            rs.name_any(),
            rs.spec.schedule.clone(),
            rs.spec.time_zone.clone(),
            if rs.spec.suspend { "True" } else { "False" }.to_string(),
            if active.is_empty() {
                "<none>".to_string()
            } else {
                active.join(",")
            },
            since(status.last_schedule_time.as_ref()),
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map_or_else(|| "<unknown>".to_string(), |c| c.status.clone()),
            until(status.next_schedule_time.as_ref()),
            since(rs.metadata.creation_timestamp.as_ref()),
        ];
        if all_namespaces {
            row.insert(0, rs.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    if all_namespaces {
        rows[0].insert(0, "NAMESPACE".into());
    }
    aligned(&rows, "", 3)
}

/// The CLI's one table printer: rows as columns, each cell escaped for the terminal and
/// padded to its column's widest cell plus `gap` spaces (the last unpadded), every line
/// opened by `indent`. `kubectl get` tables are `aligned(rows, "", 3)` (kubectl's
/// tabwriter); the sections of `reportjob status` are `aligned(rows, "  ", 2)`.
pub fn aligned(rows: &[Vec<String>], indent: &str, gap: usize) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| for_terminal(c).chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            let cell = for_terminal(cell);
            if i + 1 == row.len() {
                line.push_str(&cell);
            } else {
                line.push_str(&format!("{cell:<w$}{:gap$}", "", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An age as kubectl shows it: apimachinery's `duration.HumanDuration`
/// (`pkg/util/duration/duration.go`): `95s`, `3m12s`, `45m`, `5h3m`, `20h`, `3d4h`, `30d`,
/// `2y10d`, `9y`.
pub fn kube_age(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{API_VERSION, KIND};

    fn rj(name: &str, status: Value) -> ReportJob {
        serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "namespace": "team-a",
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "source": {"connectionSecretRef": {"name": "db"}, "table": "t", "keyColumn": "id"},
                "output": {"destination": {"pvc": {"claimName": "c", "path": "r.csv"}}}
            },
            "status": status,
        }))
        .expect("a ReportJob")
    }

    #[test]
    fn tables_align_with_their_indent_and_gap() {
        let rows = [
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), "last column".into()],
        ];
        assert_eq!(
            aligned(&rows, "  ", 2),
            "  A     BB  C\n  long  x   last column\n"
        );
        assert_eq!(
            aligned(&rows, "", 3),
            "A      BB   C\nlong   x    last column\n"
        );
    }

    #[test]
    fn ages_are_upstreams_human_durations() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 3 * 60, "5h3m"),
            (20 * 3600, "20h"),
            (48 * 3600, "2d"),
            (76 * 3600, "3d4h"),
            (30 * 86400, "30d"),
            (740 * 86400, "2y10d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(kube_age(secs), want, "{secs}s");
        }
    }

    #[test]
    fn tables_show_the_printer_columns() {
        let now: jiff::Timestamp = "2024-01-01T00:05:00Z".parse().expect("a time");
        let done = rj(
            "orders",
            json!({"phase": "Succeeded", "progress": "4/4", "rows": 4000,
                   "message": "published",
                   "output": {"location": "r.csv", "rows": 4000, "bytes": 9, "sha256": "ab"},
                   "conditions": [{"type": "Complete", "status": "True", "reason": "ReportPublished",
                                   "message": "", "lastTransitionTime": "2024-01-01T00:01:00Z"}]}),
        );
        let new = rj("x", json!({}));
        assert_eq!(
            table(&[done.clone(), new.clone()], false, false, now),
            "NAME     PHASE       CHUNKS   ROWS   AGE\n\
             orders   Succeeded   4/4      4000   5m\n\
             x                                    5m\n"
        );
        assert_eq!(
            table(&[done], true, true, now),
            "NAMESPACE   NAME     PHASE       CHUNKS   ROWS   AGE   OUTPUT   REASON            MESSAGE\n\
             team-a      orders   Succeeded   4/4      4000   5m    r.csv    ReportPublished   published\n"
        );
        assert_eq!(
            render(std::slice::from_ref(&new), Some(Format::Name), true, false).ok(),
            Some("reportjob.reporting.dev/x\n".to_string())
        );
        let list: Value = serde_json::from_str(
            &render(std::slice::from_ref(&new), Some(Format::Json), true, false)
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(
            (
                list["kind"].as_str(),
                list["items"][0]["metadata"]["name"].as_str()
            ),
            (Some("List"), Some("x"))
        );
        let one: Value = serde_json::from_str(
            &render(&[new], Some(Format::Json), false, false).unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(one["kind"], "ReportJob");
    }

    #[test]
    fn a_status_written_by_someone_else_cannot_forge_rows_or_colours() {
        let now: jiff::Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let forged = rj(
            "orders",
            json!({"phase": "Failed",
                   "message": "oops\nevil         Succeeded   9/9   999   1s   \u{1b}[32mall good\u{1b}[0m",
                   "output": {"location": "r.csv\r\u{9b}2K", "rows": 1, "bytes": 1,
                              "sha256": "x"}}),
        );
        let text = table(&[forged], true, false, now);
        assert_eq!(text.lines().count(), 2, "one header, one row: {text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("oops\\nevil"), "{text}");
        assert!(text.contains("\\u{1b}[32m"), "{text}");
        assert!(text.contains("r.csv\\r\\u{9b}2K"), "{text}");
        // Columns stay aligned on the escaped text.
        assert_eq!(for_terminal("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(for_terminal("plain"), "plain");
    }
}
