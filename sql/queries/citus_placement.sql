-- Citus table $1 on this node: how many shards it has, and the oid of its active placement here
-- (NULL: none). No row: not a Citus table. (src/citus.rs)
SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_shard s
         WHERE s.logicalrelid OPERATOR(pg_catalog.=) p.logicalrelid),
       (SELECT pg_catalog.to_regclass(pg_catalog.shard_name(p.logicalrelid, s.shardid, false))::pg_catalog.oid
          FROM pg_catalog.pg_dist_shard s
          JOIN pg_catalog.pg_dist_placement pl ON pl.shardid OPERATOR(pg_catalog.=) s.shardid
          JOIN pg_catalog.pg_dist_local_group g ON g.groupid OPERATOR(pg_catalog.=) pl.groupid
         WHERE s.logicalrelid OPERATOR(pg_catalog.=) p.logicalrelid AND pl.shardstate OPERATOR(pg_catalog.=) 1
         LIMIT 1)
  FROM pg_catalog.pg_dist_partition p
 WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass
