//! reportjob: plan, export and assemble large Postgres reports in chunks.
