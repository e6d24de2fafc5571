//! Functions a spec may not call: they act outside the exported rows (write, signal,
//! lock, sleep, read server files, run SQL text) and a READ ONLY transaction does not
//! stop them. Matched by name in the parse tree, case-insensitively, whatever the schema.

/// Exact function names that are refused. Each line says why.
pub const DENIED_FUNCTIONS: &[&str] = &[
    // Large objects live outside the transaction's READ ONLY check (lo_* is a prefix below);
    // these are the large-object functions without the underscore.
    "loread",
    "lowrite",
    // Asynchronous notification: delivered to other sessions at commit.
    "pg_notify",
    // Signalling other backends.
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_signal_backend",
    "pg_log_backend_memory_contexts",
    // Session settings that outlive the transaction (e.g. client_encoding, used to split
    // a later COPY into several statements).
    "set_config",
    // WAL / replication side effects.
    "pg_logical_emit_message",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_promote",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    // Server configuration and logs.
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_import_system_collations",
    // Sequences: nextval/setval advance a sequence even in a READ ONLY transaction
    // (it is not transactional). currval and lastval only read this session's state and
    // are allowed.
    "nextval",
    "setval",
    // Reading server files (privileged roles only, but never wanted in a report).
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    // Assigning a transaction id (a write in a READ ONLY transaction's clothing).
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    // Functions that execute SQL text given as an argument, which the parse tree cannot
    // see into (it is a string): they would bypass every check here.
    "ts_stat",
    "ts_rewrite",
];

/// Name prefixes that are refused (every function whose name starts with one).
pub const DENIED_PREFIXES: &[&str] = &[
    // lo_create, lo_put, lo_unlink, lo_import, lo_export, lo_from_bytea, lo_open, ...
    "lo_",
    // pg_advisory_lock, pg_advisory_xact_lock, pg_advisory_unlock_all, ... (session locks
    // outlive the transaction) and the pg_try_advisory_* variants.
    "pg_advisory",
    "pg_try_advisory",
    // dblink, dblink_exec, dblink_connect, ...: statements on another connection, which
    // the READ ONLY transaction does not cover.
    "dblink",
    // pg_sleep, pg_sleep_for, pg_sleep_until: hold a connection and a snapshot.
    "pg_sleep",
    // pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...: list server directories.
    "pg_ls_",
    // txid_current, txid_current_if_assigned: assign a transaction id.
    "txid_current",
    // pg_create_physical_replication_slot, pg_create_logical_replication_slot, ...
    "pg_create_",
    // pg_logical_slot_get_changes (consumes a slot), ...
    "pg_logical_slot_",
    // pg_replication_origin_create, ..._drop, ..._advance, ...
    "pg_replication_origin_",
    // pg_stat_reset, pg_stat_reset_shared, ...
    "pg_stat_reset",
    // adminpack: pg_file_write, pg_file_unlink, pg_file_rename, pg_file_sync
    "pg_file_",
    // query_to_xml, query_to_xmlschema, query_to_xml_and_xmlschema, cursor_to_xml*,
    // table_to_xml*, schema_to_xml*, database_to_xml*: run SQL text (or whole tables
    // and schemas) the parse tree cannot see.
    "query_to_xml",
    "cursor_to_xml",
    "table_to_xml",
    "schema_to_xml",
    "database_to_xml",
];

/// True when a function of this name (the last part of a possibly qualified name) is refused.
pub fn is_denied(name: &str) -> bool {
    let lower = name.to_lowercase();
    DENIED_FUNCTIONS.contains(&lower.as_str())
        || DENIED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::is_denied;

    #[test]
    fn denylist_covers_the_issue() {
        for name in [
            "lo_create",
            "LO_PUT",
            "lo_unlink",
            "lo_import",
            "lo_export",
            "lo_from_bytea",
            "loread",
            "pg_notify",
            "pg_terminate_backend",
            "pg_cancel_backend",
            "pg_advisory_lock",
            "pg_advisory_xact_lock_shared",
            "pg_try_advisory_lock",
            "pg_advisory_unlock_all",
            "set_config",
            "pg_logical_emit_message",
            "dblink",
            "dblink_exec",
            "pg_sleep",
            "pg_sleep_for",
            "nextval",
            "setval",
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_dir",
            "pg_stat_file",
            "txid_current",
            "pg_current_xact_id",
            "pg_reload_conf",
            "pg_rotate_logfile",
            "pg_switch_wal",
            "pg_create_restore_point",
            "query_to_xml",
            "query_to_xmlschema",
            "cursor_to_xml",
            "table_to_xml_and_xmlschema",
        ] {
            assert!(is_denied(name), "{name} should be denied");
        }
        for name in [
            "lower", "log", "count", "currval", "lastval", "now", "coalesce", "length",
        ] {
            assert!(!is_denied(name), "{name} should be allowed");
        }
    }
}
