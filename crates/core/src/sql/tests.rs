//! Unit tests of the parser checks (no database).

use super::*;

#[test]
fn plain_selects_pass_and_are_regenerated() {
    for ok in [
        "SELECT id, name FROM orders",
        "select * from orders where id > 3 order by id",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "SELECT a FROM t UNION ALL SELECT b FROM u",
        "VALUES (1), (2)",
        "SELECT x$a$ FROM t",
        "SELECT $$)$$ AS p, $t$ ( $t$ AS q",
        "SELECT currval('s'), lastval()",
        "SELECT 1;",
    ] {
        let q = SelectQuery::parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        assert!(!q.sql().is_empty());
    }
}

#[test]
fn other_statements_and_clauses_are_refused() {
    for (bad, needle) in [
        ("SELECT 1; SELECT 2", "2 statements"),
        ("INSERT INTO t VALUES (1)", "must be one SELECT"),
        ("COMMIT", "must be one SELECT"),
        ("SET TRANSACTION READ WRITE", "must be one SELECT"),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "DELETE",
        ),
        (
            "WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d",
            "INSERT",
        ),
        ("SELECT * FROM t FOR UPDATE", "locking clause"),
        (
            "SELECT * FROM (SELECT * FROM t FOR SHARE) s",
            "locking clause",
        ),
        ("SELECT * INTO x FROM t", "INTO"),
        ("SELECT pg_sleep(1)", "pg_sleep"),
        ("SELECT PG_CATALOG.Pg_Sleep(1)", "pg_sleep"),
        ("SELECT \"pg_notify\"('c', 'x')", "pg_notify"),
        (
            "SELECT set_config('client_encoding', 'SJIS', false)",
            "set_config",
        ),
        ("SELECT * FROM lo_create(0)", "lo_create"),
        (
            "SELECT * FROM t WHERE id IN (SELECT nextval('s'))",
            "nextval",
        ),
        (
            "SELECT query_to_xml('delete from t', true, true, '')",
            "query_to_xml",
        ),
        ("SELECT 1 FROM t WHERE (", "not valid SQL"),
    ] {
        let err = SelectQuery::parse(bad).expect_err(bad).0;
        assert!(err.contains(needle), "{bad:?}: {err}");
    }
}

#[test]
fn filters_are_one_expression() {
    for ok in [
        "id > 10 AND (status = 'open' OR status = ')')",
        "x$a$ = 1",
        "note = $t$ ) OR (true $t$",
        "s = E'\\')'",
        "x = 1 -- trailing ) comment",
        "x = 1 /* nested /* ) */ */",
        "U&\"d\\0061ta\" = 1",
        "id IN (SELECT id FROM other)",
    ] {
        let f = Filter::parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        assert!(!f.sql().contains("SELECT 1 WHERE"), "{ok:?} -> {}", f.sql());
    }
    for (bad, needle) in [
        ("x) OR (true", "not valid SQL"),
        ("true) OR (x$a$ = 1", "not valid SQL"),
        ("true UNION SELECT 2", "exactly one boolean expression"),
        ("true ORDER BY 1", "exactly one boolean expression"),
        ("true LIMIT 1", "exactly one boolean expression"),
        ("true FOR UPDATE", "exactly one boolean expression"),
        ("true GROUP BY 1", "exactly one boolean expression"),
        ("true; COMMIT; INSERT INTO canary VALUES (1)", "statements"),
        (
            "pg_sleep(1) IS NOT NULL",
            "function pg_sleep is not allowed",
        ),
        ("pg_advisory_lock(1) IS NULL", "pg_advisory_lock"),
        ("", "is empty"),
    ] {
        let err = Filter::parse(bad).expect_err(bad).0;
        assert!(err.contains(needle), "{bad:?}: {err}");
    }
}

#[test]
fn dollar_inside_identifier_does_not_open_a_quote() {
    // `x$a$` is an identifier; the old scanner took `$a$` as a dollar quote and let the
    // rest of the text close the WHERE parenthesis.
    let f = Filter::parse("x$a$ = 1 OR x$a$ = 2").unwrap();
    assert!(f.sql().contains("x$a$"), "{}", f.sql());
    assert!(Filter::parse("x$a$ = 1) OR (true").is_err());
}

#[test]
fn copy_statement_is_regenerated() {
    let sql = regenerate_copy_to_stdout(
        "COPY (SELECT \"id\" FROM \"public\".\"t\" WHERE (true) AND \"id\" >= '1'::bigint ORDER BY \"id\") TO STDOUT WITH (FORMAT csv, DELIMITER ',', NULL '')",
    )
    .unwrap();
    assert!(sql.starts_with("COPY (SELECT"), "{sql}");
    for bad in [
        "COPY t TO '/tmp/x'",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "COPY t FROM STDIN",
        "COPY (SELECT 1) TO STDOUT; COPY (SELECT 2) TO STDOUT",
        "SELECT 1",
    ] {
        assert!(regenerate_copy_to_stdout(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn filters_that_stay_inside_their_parentheses_pass() {
    for ok in [
        "a = 1 AND (b = 2 OR c = 3)",
        "name = ')' AND x = '('",
        "\"weird)\" = 1",
        "x = 1 -- trailing ) comment",
        "x = $$)$$ AND y = $t$($t$",
        "x = 1 /* ) */",
        "s = E'\\')'",
        "x$a$ = 1",
    ] {
        assert!(Filter::parse(ok).is_ok(), "{ok:?}");
    }
}

#[test]
fn filters_that_escape_or_add_a_statement_are_refused() {
    for bad in [
        "x) OR (true",
        "(x",
        "x = 'open",
        "a; DROP TABLE t",
        "/* open",
        "x$a$ = 1) OR (true",
        "SELECT 1",
    ] {
        assert!(Filter::parse(bad).is_err(), "{bad:?}");
    }
    let denied = Filter::parse("pg_sleep(10) IS NULL").expect_err("denied");
    assert!(denied.0.contains("pg_sleep"), "{denied}");
}

#[test]
fn regenerated_sql_parses_back_to_the_same_statement() {
    // Regeneration is a fixed point: what runs parses back to itself (the `) ` inside the
    // dollar quote and the escaped quote inside the E'' string stay data). The parser's cost
    // is measured by benches/run.sh (planning), never by a timed test.
    let query = "WITH recent AS (SELECT o.id, o.customer_id, o.total FROM orders o WHERE o.created_at > now() - interval '30 days') \
                 SELECT r.id, c.name, r.total, $t$ ) $t$ AS note FROM recent r JOIN customers c ON c.id = r.customer_id WHERE c.region IN ('eu', 'us')";
    let once = SelectQuery::parse(query).unwrap().sql().to_string();
    let twice = SelectQuery::parse(&once).unwrap().sql().to_string();
    assert_eq!(once, twice);
    assert!(once.contains(" ) "), "{once}");
    let filter = "status IN ('open', 'held') AND total > 10 AND note <> E'\\')'";
    let once = Filter::parse(filter).unwrap().sql().to_string();
    let twice = Filter::parse(&once).unwrap().sql().to_string();
    assert_eq!(once, twice);
}

/// `n` ANDed comparisons, as the attacker's 220 KB query had 20,000.
fn anded_terms(n: usize) -> String {
    let terms: Vec<String> = (0..n).map(|i| format!("c{} = {i}", i % 10)).collect();
    terms.join(" AND ")
}

/// The longest ANDed filter that fits in [`MAX_SQL_BYTES`].
fn anded_at_the_limit(prefix: &str) -> String {
    let mut text = format!("{prefix}c0 = 0");
    for i in 1.. {
        let term = format!(" AND c{} = {i}", i % 10);
        if text.len() + term.len() > MAX_SQL_BYTES {
            break;
        }
        text.push_str(&term);
    }
    text
}

#[test]
fn a_hostile_query_at_the_limit_validates_in_bounded_memory() {
    // 64 KiB of ANDed terms: accepted, and what checking it holds at once is one parse
    // tree (pg_query's protobuf nodes take ~600 bytes each: ~35 MB here), never two, and
    // the walk builds nothing per node. Before, the tree was also turned into a JSON value
    // whole: 110 KB of such a query held 273 MB.
    let query = anded_at_the_limit("SELECT id FROM t WHERE ");
    assert!(query.len() > MAX_SQL_BYTES - 200 && query.len() <= MAX_SQL_BYTES);
    let (parsed, peak) = crate::test_alloc::peak_of(|| SelectQuery::parse(&query));
    parsed.expect("a query at the limit is valid");
    eprintln!("query peak {peak}");
    assert!(
        peak < 48 * 1024 * 1024,
        "checking a {} byte query held {peak} bytes at once",
        query.len()
    );
    let filter = anded_at_the_limit("");
    let (parsed, peak) = crate::test_alloc::peak_of(|| Filter::parse(&filter));
    parsed.expect("a filter at the limit is valid");
    assert!(peak < 48 * 1024 * 1024, "{peak} bytes");
}

#[test]
fn the_walk_holds_nothing_per_node() {
    // The walk itself (after parsing) allocates only its path and what it returns: the
    // same few hundred bytes for 100 terms as for 6,000.
    let small = pg_query::parse(&format!("SELECT 1 WHERE {}", anded_terms(100)), 0).ok();
    let big = pg_query::parse(&anded_at_the_limit("SELECT 1 WHERE "), 0).unwrap();
    let (found, big_peak) = crate::test_alloc::peak_of(|| tree::inspect(&big.protobuf));
    let found = found.unwrap();
    assert!(found.nodes > 30_000, "{} nodes", found.nodes);
    assert!(big_peak < 64 * 1024, "the walk held {big_peak} bytes");
    if let Some(small) = small {
        let (_, small_peak) = crate::test_alloc::peak_of(|| tree::inspect(&small.protobuf));
        assert!(small_peak < 64 * 1024, "{small_peak}");
    }
}

#[test]
fn the_densest_sql_at_the_limit_fits_the_node_budget() {
    // `SELECT 1,1,1...` gives about the most nodes per byte (`1+1+1...` nests, and the
    // parser's own stack limit stops it first); at 64 KiB it must still be within
    // MAX_TREE_NODES, so the budget refuses only what the length limit would not.
    let dense = format!("SELECT {}", vec!["1"; (MAX_SQL_BYTES - 8) / 2].join(","));
    assert!(dense.len() <= MAX_SQL_BYTES);
    let parsed = pg_query::parse(&dense, 0).expect("parses");
    let found = tree::inspect(&parsed.protobuf).expect("within the budget");
    assert!(
        found.nodes < tree::MAX_TREE_NODES,
        "{} nodes for {} bytes",
        found.nodes,
        dense.len()
    );
}

#[test]
fn a_text_over_the_limit_is_refused_before_parsing_naming_the_limit() {
    // The attacker's 220 KB query of 20,000 terms.
    let query = format!("SELECT id FROM t WHERE {}", anded_terms(20_000));
    assert!(query.len() > 200_000);
    let (refused, peak) = crate::test_alloc::peak_of(|| SelectQuery::parse(&query));
    let e = refused.expect_err("too long");
    assert!(e.0.contains("at most 65536 bytes"), "{e}");
    assert!(peak < 4096, "refusing held {peak} bytes: it parsed");
    let e = Filter::parse(&anded_terms(20_000)).expect_err("too long");
    assert!(e.0.contains("at most 65536 bytes"), "{e}");
}

#[test]
fn the_node_budget_refuses_a_larger_tree() {
    // Beyond the length limit (the COPY statements the engine composes have none), the
    // budget still stops the walk.
    let dense = format!("SELECT {}", vec!["1"; tree::MAX_TREE_NODES / 2].join(","));
    let parsed = pg_query::parse(&dense, 0).expect("parses");
    let e = tree::inspect(&parsed.protobuf).expect_err("over the budget");
    assert!(e.0.contains("more than 200000 nodes"), "{e}");
}

#[test]
fn the_walk_reports_params_and_the_top_kind() {
    let parsed = pg_query::parse("SELECT f($2) FROM t WHERE a = $1", 0).unwrap();
    let found = tree::inspect(&parsed.protobuf).unwrap();
    assert_eq!(found.params, vec![(9, 2), (30, 1)]);
    let parsed = pg_query::parse("INSERT INTO t VALUES (1)", 0).unwrap();
    let top = parsed.protobuf.stmts[0].stmt.as_ref().unwrap();
    assert_eq!(tree::top_kind(top.node.as_ref().unwrap()), "InsertStmt");
}
