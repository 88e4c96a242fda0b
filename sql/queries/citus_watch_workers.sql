-- $1 (auth_jwt.watch_key_table() or watch_session_table(), as a query of its json_agg) on every
-- Citus worker, run from the coordinator: per worker, its node, whether the command ran, its error
-- if not, and each (relation, action) row it returned. (src/key_watch.rs)
SELECT n.node, n.success, n.result, r.relation, r.action
  FROM (SELECT w.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) w.nodeport::pg_catalog.text AS node,
               w.success, w.result
          FROM pg_catalog.run_command_on_workers($1) AS w) AS n
  LEFT JOIN LATERAL pg_catalog.json_to_recordset(CASE WHEN n.success THEN n.result::pg_catalog.json END)
       AS r(relation pg_catalog.text, action pg_catalog.text) ON true
 ORDER BY n.node
