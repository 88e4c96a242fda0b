  ) AS ours(always, present)
 ORDER BY c.relispartition, c.oid, deps.own_rows
