-- The triggers of table $1, as watch_key_table() or watch_session_table() sees them: name,
-- whether it does our job (the rule is sql/queries/our_trigger.sql), whether it calls $2
-- (auth_jwt.on_key_change() or on_session_change()) at all, its
-- function, its enabled state, whether it was cloned from a partitioned parent. Ours first, an
-- ENABLE ALWAYS one before others. (src/key_watch.rs)
SELECT t.tgname::pg_catalog.text,
       (
