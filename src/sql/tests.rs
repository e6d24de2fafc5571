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
