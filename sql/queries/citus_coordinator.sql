-- This node is the Citus coordinator (its group is 0). (src/citus.rs)
SELECT g.groupid OPERATOR(pg_catalog.=) 0 FROM pg_catalog.pg_dist_local_group g
