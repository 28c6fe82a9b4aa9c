-- PostgreSQL gets a safe text-to-inet function for listing incidents by
-- network here. SQLite has no address type: its store filters by network in
-- Rust (see alerting/src/store/sqlite.rs). This file keeps the two dialects'
-- migration versions identical.
SELECT 1;
