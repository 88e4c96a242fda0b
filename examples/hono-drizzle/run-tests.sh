#!/usr/bin/env bash
# The example's tests (node --test): the API, and the Prisma helper, against the PostgreSQL at
# PGHOST (a socket directory) and PGPORT, with auth_jwt installed and a trusted superuser postgres.
# Each test file creates its own database and drops it. Dependencies come from the lock files,
# installed only when missing or older than them, without install scripts (none is needed).
set -euo pipefail
cd "$(dirname "$0")"
: "${PGHOST:?set PGHOST to the socket directory of a cluster with auth_jwt}" "${PGPORT:?set PGPORT}"
export PGHOST PGPORT
started=$SECONDS

install() {
    if [ ! -f "$1/node_modules/.package-lock.json" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
        echo "npm ci in $(cd "$1" && pwd)"
        (cd "$1" && nice -n 10 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    fi
}
install .
install prisma
if [ ! -f prisma/generated/client.ts ] || [ prisma/schema.prisma -nt prisma/generated/client.ts ]; then
    # `prisma generate` needs no schema engine, but the CLI downloads one unless told where it is
    # (binaries.prisma.sh may be unreachable): a path that is never run. No update check either.
    if ! out=$(cd prisma && PRISMA_SCHEMA_ENGINE_BINARY=/bin/false CHECKPOINT_DISABLE=1 node_modules/.bin/prisma generate 2>&1); then
        echo "$out" >&2
        exit 1
    fi
fi

node_modules/.bin/tsc -p .
node_modules/.bin/tsc -p prisma

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# One file at a time: each bootstraps a database, and roles are cluster-wide.
node --import tsx --test --test-concurrency=1 --test-reporter=tap test/*.test.ts prisma/*.test.ts >"$log" 2>&1 || status=$?
[ "$status" -eq 0 ] || cat "$log"
count() { sed -n "s/^# $1 //p" "$log" | tail -1; }
echo "examples/hono-drizzle: $(count pass) passed, $(count fail) failed in $((SECONDS - started)) s"
exit "$status"
