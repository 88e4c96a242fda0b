-- The columns of relation $1, in order: name and type as format_type spells it. (src/relation.rs)
SELECT attname::pg_catalog.text, pg_catalog.format_type(atttypid, NULL) FROM pg_catalog.pg_attribute
 WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped
 ORDER BY attnum
