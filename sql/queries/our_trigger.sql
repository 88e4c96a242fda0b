t.tgfoid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure($2)
       AND t.tgtype OPERATOR(pg_catalog.=) 29 AND t.tgqual IS NULL AND t.tgconstraint OPERATOR(pg_catalog.=) 0
       AND pg_catalog.cardinality(t.tgattr::pg_catalog.int2[]) OPERATOR(pg_catalog.=) 0
