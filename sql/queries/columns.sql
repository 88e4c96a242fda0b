-- The columns of relation $1, in order: name, type as format_type spells it, and whether it is a
-- virtual generated column (PostgreSQL 18; computed when read, NULL in the tuples a trigger
-- sees). (src/relation.rs)
SELECT attname::pg_catalog.text, pg_catalog.format_type(atttypid, NULL),
       attgenerated::pg_catalog.text OPERATOR(pg_catalog.=) 'v' FROM pg_catalog.pg_attribute
 WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped
 ORDER BY attnum
