       ) AS ours,
       t.tgfoid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure($2),
       t.tgfoid::pg_catalog.regprocedure::pg_catalog.text, t.tgenabled::pg_catalog.text,
       t.tgparentid OPERATOR(pg_catalog.<>) 0
  FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) $1
 ORDER BY ours DESC, t.tgenabled OPERATOR(pg_catalog.=) 'A' DESC
