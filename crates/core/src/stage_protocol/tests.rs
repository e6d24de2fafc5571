//! Unit tests of the stage protocol: round trips, truncation, refusals, chunk sets.

use super::*;

fn report(delivered: bool) -> NotifyReport {
    NotifyReport {
        delivered,
        reason: (!delivered).then(|| "WebhookTimeout".to_string()),
        attempts: 3,
        status: delivered.then_some(200),
        message: (!delivered).then(|| "operation timed out".to_string()),
    }
}

fn every_variant() -> Vec<StageResult> {
    vec![
        StageResult::Planned {
            run_id: "rj-0123456789ab".into(),
            chunks: 12,
            digest: "sha256:abc".into(),
            estimated_rows: 120_000,
            strategy: "keyRange".into(),
            warnings: vec!["the database role \"rj\" is a superuser".into()],
        },
        StageResult::Exported {
            chunk: 7,
            rows: 1000,
            bytes: 65_536,
            crc32: Some(0xf00d),
        },
        StageResult::Assembled {
            rows: 12_000,
            bytes: 1 << 20,
            sha256: "beef".into(),
            location: "s3://reports/orders.csv".into(),
            url: Some("https://s3.example/reports/orders.csv?X-Amz-Signature=abc def".into()),
            url_expires_at: Some(Timestamp::from_second(1_700_000_000).expect("time")),
            notified: Some(report(false)),
            snapshot: Some(crate::snapshot::SnapshotRecord {
                id: crate::snapshot::SnapshotId::parse("00000003-0000001B-1").expect("id"),
                taken_at: Timestamp::from_second(1_699_999_000).expect("time"),
            }),
            file_count: None,
            files: Vec::new(),
        },
        StageResult::Assembled {
            rows: 0,
            bytes: 0,
            sha256: "e3b0".into(),
            location: "/reportjob/output/empty.csv".into(),
            url: None,
            url_expires_at: None,
            notified: None,
            snapshot: None,
            file_count: None,
            files: Vec::new(),
        },
        StageResult::Notified(report(true)),
        StageResult::Notified(report(false)),
        StageResult::CleanedUp {
            removed: "s3://reports/.reportjob/rj-1/".into(),
            deleted: Some("s3://reports/orders.csv".into()),
        },
        StageResult::Failed {
            reason: "database".into(),
            message: "SQLSTATE 42703: column \"x\" does not exist\nsecond line".into(),
        },
    ]
}

#[test]
fn every_variant_round_trips_as_one_line() {
    for result in every_variant() {
        let line = result.to_line();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.len() <= MAX_RESULT_BYTES);
        assert!(
            line.contains(&format!("\"result\":\"{}\"", result.kind())),
            "{line}"
        );
        assert_eq!(StageResult::parse(&line), Ok(result.clone()), "{line}");
    }
}

#[test]
fn fields_are_camel_case() {
    let line = every_variant()[2].to_line();
    assert!(
        line.contains("\"urlExpiresAt\":\"2023-11-14T22:13:20Z\""),
        "{line}"
    );
    assert!(line.starts_with("{\"result\":\"Assembled\""), "{line}");
    assert!(line.contains("\"notified\":{\"delivered\":false"), "{line}");
    let planned = every_variant()[0].to_line();
    assert!(
        planned.contains("\"runId\":\"rj-0123456789ab\""),
        "{planned}"
    );
}

#[test]
fn long_strings_are_cut_so_the_line_still_parses() {
    // Multi-byte characters and characters JSON escapes, so that cuts must respect both.
    let message = "é\"\n".repeat(3000);
    let failed = StageResult::Failed {
        reason: "storage".into(),
        message: message.clone(),
    };
    let line = failed.to_line();
    assert!(line.len() <= MAX_RESULT_BYTES, "{}", line.len());
    let Ok(StageResult::Failed {
        reason,
        message: cut,
    }) = StageResult::parse(&line)
    else {
        panic!("truncated line does not parse: {line}");
    };
    assert_eq!(reason, "storage");
    assert!(cut.ends_with('…'), "{cut}");
    assert!(message.starts_with(cut.trim_end_matches('…')));
    assert!(cut.len() > 1000, "cut no more than needed: {}", cut.len());

    // Several long fields: the longest is cut first, the short ones are kept.
    let assembled = StageResult::Assembled {
        rows: 1,
        bytes: 2,
        sha256: "abc".into(),
        location: "x".repeat(3000),
        url: Some(format!("https://example/{}", "y".repeat(3000))),
        url_expires_at: None,
        notified: Some(report(false)),
        snapshot: None,
        file_count: None,
        files: Vec::new(),
    };
    let line = assembled.to_line();
    assert!(line.len() <= MAX_RESULT_BYTES);
    let Ok(StageResult::Assembled {
        sha256, notified, ..
    }) = StageResult::parse(&line)
    else {
        panic!("{line}");
    };
    assert_eq!(sha256, "abc");
    assert_eq!(notified, Some(report(false)));
}

#[test]
fn malformed_oversized_and_unknown_results_are_refused() {
    assert_eq!(StageResult::parse(""), Err(ProtocolError::Empty));
    assert_eq!(StageResult::parse("  \n"), Err(ProtocolError::Empty));
    let old = "chunks=3 digest=sha256:abc run=rj-1";
    assert!(matches!(
        StageResult::parse(old),
        Err(ProtocolError::Malformed(_))
    ));
    let unknown = StageResult::parse(r#"{"result":"Exploded","chunk":1}"#);
    let Err(ProtocolError::Malformed(why)) = unknown else {
        panic!("{unknown:?}");
    };
    assert!(why.contains("unknown variant"), "{why}");
    let missing = StageResult::parse(r#"{"result":"Planned","chunks":3}"#);
    assert!(
        matches!(missing, Err(ProtocolError::Malformed(_))),
        "{missing:?}"
    );
    let negative =
        StageResult::parse(r#"{"result":"Exported","chunk":-1,"rows":1,"bytes":1,"sha256":"x"}"#);
    assert!(matches!(negative, Err(ProtocolError::Malformed(_))));
    // A chunk pod of the version before (its part's sha256, no CRC-32) still counts
    // during an upgrade.
    let earlier =
        StageResult::parse(r#"{"result":"Exported","chunk":4,"rows":10,"bytes":99,"sha256":"ab"}"#);
    assert_eq!(
        earlier,
        Ok(StageResult::Exported {
            chunk: 4,
            rows: 10,
            bytes: 99,
            crc32: None
        })
    );
    let untagged = StageResult::parse(r#"{"reason":"x","message":"y"}"#);
    assert!(matches!(untagged, Err(ProtocolError::Malformed(_))));
    let huge = format!(
        r#"{{"result":"Failed","reason":"x","message":"{}"}}"#,
        "a".repeat(MAX_RESULT_BYTES)
    );
    assert_eq!(
        StageResult::parse(&huge),
        Err(ProtocolError::TooLong(huge.len()))
    );
}

#[test]
fn failure_text_reads_failed_results_and_falls_back_to_raw_text() {
    let line = StageResult::Failed {
        reason: "source".into(),
        message: "spec.source.keyColumn: missing".into(),
    }
    .to_line();
    assert_eq!(
        StageResult::failure_text(&line),
        "spec.source.keyColumn: missing"
    );
    assert_eq!(
        StageResult::failure_text("panicked at main.rs\n"),
        "panicked at main.rs"
    );
}

#[test]
fn chunk_sets_parse_display_and_map_completion_indexes() {
    let set = ChunkSet::parse("7,19-21", 100).expect("valid");
    assert_eq!(set.as_slice(), &[7, 19, 20, 21]);
    assert_eq!(set.to_string(), "7,19-21");
    assert_eq!(ChunkSet::parse("", 10), Ok(ChunkSet::default()));
    assert_eq!(ChunkSet::default().to_string(), "");
    assert_eq!(
        ChunkSet::parse("5, 4,4", 10).expect("valid").as_slice(),
        &[4, 5]
    );
    for bad in ["3-1", "x", "1-", "-1", "1-2-3", "10", "0-10"] {
        assert!(ChunkSet::parse(bad, 10).is_err(), "{bad} accepted");
    }
    assert!(ChunkSet::parse("0-999999999999", usize::MAX).is_err());
    let many: Vec<usize> = (0..50).filter(|i| i % 3 != 0).collect();
    let set = ChunkSet::from_indexes(many.clone());
    assert_eq!(ChunkSet::parse(&set.to_string(), 50), Ok(set.clone()));

    // A retry Job over chunks 7 and 9: completion index 1 is chunk 9.
    let listed = ChunkSet::parse("7,9", 10).expect("valid");
    assert_eq!(listed.chunk_of_completion_index(1), Some(9));
    assert_eq!(listed.chunk_of_completion_index(2), None);
    let done = ChunkSet::parse("0-1,5", 10).expect("valid");
    assert_eq!(
        listed.chunks_of_completion_indexes(&done).to_string(),
        "7,9"
    );
    assert_eq!(ChunkSet::all(4).to_string(), "0-3");
    assert_eq!(listed.missing_from(10).to_string(), "0-6,8");
    assert_eq!(listed.union(&done).to_string(), "0-1,5,7,9");
    assert_eq!(listed.below(8).to_string(), "7");
    assert!(listed.contains(9) && !listed.contains(8));
}

#[test]
fn a_split_result_carries_the_files_that_fit_and_counts_them_all() {
    let files: Vec<crate::split::OutputFile> = (0..500)
        .map(|i| crate::split::OutputFile {
            location: format!("s3://reports/r-{i:05}.csv"),
            rows: 1_000_000,
            bytes: 123_456_789,
            sha256: "ab".repeat(32),
            chunks: format!("{i}"),
            url: Some(format!(
                "https://s3.example/reports/r-{i:05}.csv?X-Amz-Signature={}",
                "c".repeat(64)
            )),
            url_expires_at: None,
        })
        .collect();
    let result = StageResult::Assembled {
        rows: 500_000_000,
        bytes: 500 * 123_456_789,
        sha256: "cd".repeat(32),
        location: "s3://reports/r.csv.manifest.json".into(),
        url: Some(format!(
            "https://s3.example/reports/r.csv.manifest.json?X-Amz-Signature={}",
            "e".repeat(600)
        )),
        url_expires_at: None,
        notified: None,
        snapshot: None,
        file_count: None,
        files: Vec::new(),
    }
    .with_files(&files);
    let line = result.to_line();
    assert!(line.len() <= MAX_RESULT_BYTES, "{}", line.len());
    let Ok(StageResult::Assembled {
        file_count,
        files: carried,
        url,
        ..
    }) = StageResult::parse(&line)
    else {
        panic!("{line}");
    };
    assert_eq!(file_count, Some(500));
    assert!(
        carried.len() >= 20 && carried.len() < 500,
        "{}",
        carried.len()
    );
    assert!(
        carried.iter().all(|f| f.sha256 == "ab".repeat(32)),
        "no hash is cut"
    );
    assert!(url.is_some_and(|u| !u.ends_with('…')), "nor the link");
}
