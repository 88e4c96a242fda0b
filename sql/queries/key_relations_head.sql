-- Every relation a read of the key or session relation $1 reads, and why each is not watched
-- (NULL: it is) by a trigger calling $2 (auth_jwt.on_key_change() or on_session_change()): $1
-- and, recursively, every relation its view rules or row-level security policies read, and every
-- partition or inheritance child (whose rows a read of the parent returns). Partitioned parents
-- come first (their trigger is cloned to their partitions). Columns: oid, name, whether it is a
-- base table (can carry the trigger), the reason, whether its rows are the rows of $1 (itself, a
-- partition or an inheritance child, not read through a view or a policy), whether row-level
-- security applies to its owner. (src/key_watch.rs; the trigger rule between the two halves of
-- this query is sql/queries/our_trigger.sql.)
WITH RECURSIVE
   reads(parent, child, own_rows) AS (
     SELECT r.ev_class, d.refobjid, false FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d
         ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) r.oid
        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.<>) r.ev_class
     UNION ALL
     SELECT p.polrelid, d.refobjid, false FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_depend d
         ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) p.oid
        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.<>) p.polrelid
     UNION ALL
     SELECT i.inhparent, i.inhrelid, true FROM pg_catalog.pg_inherits i),
   deps(oid, own_rows) AS (
     SELECT $1::pg_catalog.oid, true
     UNION
     SELECT reads.child, deps.own_rows AND reads.own_rows FROM deps JOIN reads ON reads.parent OPERATOR(pg_catalog.=) deps.oid)
SELECT DISTINCT ON (c.relispartition, c.oid)
       c.oid, c.oid::pg_catalog.regclass::pg_catalog.text, c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog."char"[]),
       CASE
         WHEN calls.list IS NOT NULL THEN
           CASE c.relkind WHEN 'v' THEN 'its view definition calls ' ELSE 'its row-level security policies call ' END
           OPERATOR(pg_catalog.||) calls.list OPERATOR(pg_catalog.||) ', whose results no trigger can watch'
         WHEN clock.uses THEN
           CASE c.relkind WHEN 'v' THEN 'its view definition uses ' ELSE 'its row-level security policies use ' END
           OPERATOR(pg_catalog.||) 'CURRENT_TIMESTAMP, CURRENT_DATE or another SQL value function, whose value no trigger can watch'
         WHEN catalogs.list IS NOT NULL THEN
           CASE c.relkind WHEN 'v' THEN 'its view definition reads ' ELSE 'its row-level security policies read ' END
           OPERATOR(pg_catalog.||) catalogs.list OPERATOR(pg_catalog.||) ', system catalogs whose changes no trigger can watch'
         WHEN c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog."char"[]) THEN CASE
           WHEN ours.always THEN NULL
           WHEN ours.present THEN 'its ' OPERATOR(pg_catalog.||) $3 OPERATOR(pg_catalog.||) ' trigger is not ENABLE ALWAYS, so it does not fire for logical replication apply'
           ELSE 'it has no ' OPERATOR(pg_catalog.||) $3 OPERATOR(pg_catalog.||) ' trigger' END
         WHEN c.relkind OPERATOR(pg_catalog.=) 'v' THEN NULL
         WHEN c.relkind OPERATOR(pg_catalog.=) 'm' THEN 'it is a materialized view, whose REFRESH ... CONCURRENTLY sends no invalidation'
         WHEN c.relkind OPERATOR(pg_catalog.=) 'f' THEN 'it is a foreign table, whose rows change elsewhere'
         ELSE 'it cannot carry a trigger' END,
       deps.own_rows, c.relrowsecurity AND c.relforcerowsecurity
  FROM deps JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) deps.oid
  -- The stored expression trees of its view rules and row-level security policies.
  CROSS JOIN LATERAL (
    SELECT pg_catalog.array_agg(tree.t)
      FROM (SELECT r.ev_action::pg_catalog.text FROM pg_catalog.pg_rewrite r WHERE r.ev_class OPERATOR(pg_catalog.=) c.oid
            UNION ALL
            SELECT p.polqual::pg_catalog.text FROM pg_catalog.pg_policy p
             WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid AND c.relrowsecurity) AS tree(t)) AS trees(list)
  -- The functions they call, other than built-in immutable ones, directly or through operators
  -- (pg_depend records no dependency on a function an operator calls, nor on built-in
  -- functions). Such a function can read tables or the clock, so no trigger can tell when its
  -- results change.
  CROSS JOIN LATERAL (
    SELECT pg_catalog.string_agg(DISTINCT f.oid::pg_catalog.regprocedure::pg_catalog.text, ', ')
      FROM pg_catalog.unnest(trees.list) AS tree(t),
           pg_catalog.regexp_matches(tree.t, ':(funcid|opfuncid|aggfnoid|winfnoid|opno) ([0-9]+)', 'g') AS m
      JOIN pg_catalog.pg_proc f ON f.oid OPERATOR(pg_catalog.=) CASE m[1]
             WHEN 'opno' THEN (SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.=) m[2]::pg_catalog.oid)
             ELSE m[2]::pg_catalog.oid END
     WHERE f.oid OPERATOR(pg_catalog.>=) 16384 OR f.provolatile OPERATOR(pg_catalog.<>) 'i') AS calls(list)
  -- CURRENT_TIMESTAMP, CURRENT_DATE, LOCALTIMESTAMP and the like: no function call in the tree,
  -- a value of their own that changes by itself.
  CROSS JOIN LATERAL (
    SELECT pg_catalog.bool_or(pg_catalog.strpos(tree.t, '{SQLVALUEFUNCTION') OPERATOR(pg_catalog.>) 0)
      FROM pg_catalog.unnest(trees.list) AS tree(t)) AS clock(uses)
  -- System catalogs they read: pg_depend records no dependency on a built-in relation either, and a
  -- catalog change (a role dropped, a setting altered) invalidates no view of it.
  CROSS JOIN LATERAL (
    SELECT pg_catalog.string_agg(DISTINCT m[1]::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text, ', ')
      FROM pg_catalog.unnest(trees.list) AS tree(t),
           pg_catalog.regexp_matches(tree.t, ':relid ([0-9]+)', 'g') AS m
     WHERE m[1]::pg_catalog.oid OPERATOR(pg_catalog.<) 16384 AND m[1]::pg_catalog.oid OPERATOR(pg_catalog.<>) 0) AS catalogs(list)
  -- Its triggers calling $2: one in ENABLE ALWAYS state, any at all.
  CROSS JOIN LATERAL (
    SELECT pg_catalog.bool_or(t.tgenabled OPERATOR(pg_catalog.=) 'A'), pg_catalog.count(*) OPERATOR(pg_catalog.>) 0
      FROM pg_catalog.pg_trigger t
     WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid AND
