# Shared by scripts/demo and scripts/test: prerequisites, build, and a throwaway cluster.
# Runs as root on Debian 12 (PostgreSQL refuses root, so the server runs as user postgres).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
export PGBIN
PGRX_VERSION=0.18.1
export PATH="$HOME/.cargo/bin:$PATH"

# The PostgreSQL majors to work on, read when asked, so that AUTH_JWT_MAJORS means the same whether
# it is set for the whole script or for one call (AUTH_JWT_MAJORS="15" for a quicker local run).
majors() { echo "${AUTH_JWT_MAJORS:-15 17 18}"; }

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

source "$ROOT/scripts/postgres-majors.sh"

# use_major N: build, install and run against PostgreSQL N from now on.
use_major() {
    PG_CONFIG=$(pg_config_of "$1")
    PGBIN=$("$PG_CONFIG" --bindir)
    export PG_CONFIG PGBIN
}

# ensure_prereqs [demo]: install what is missing. Always: PostgreSQL 15 and its server headers,
# libclang (pgrx's bindgen) and cargo-pgrx 0.18.1. Unless `demo`: also what only the tests use
# (PgBouncer, openssl, valgrind, sudo), PostgreSQL 17/18 (built from Debian's sources, once) for
# the majors in $(majors), and pgrx's config for them. The apt packages download and install while
# cargo-pgrx compiles: neither needs the other.
ensure_prereqs() {
    local pkgs=(postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config ca-certificates)
    [ "${1:-}" = demo ] || pkgs+=(libssl-dev sudo pgbouncer openssl valgrind)
    local missing=() p apt_pid=
    for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } &
        apt_pid=$!
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
        # Without the default features: they only add TLS (rustls and native-tls) for `cargo pgrx
        # init` to download PostgreSQL, which we never ask it to do. A debug build: it compiles in
        # half the time (1:43 against 3:28 here), and what it runs (cargo, file copies, reading the
        # schema section) takes the same second either way.
        log "cargo install cargo-pgrx $PGRX_VERSION (about two minutes, once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --no-default-features --debug
    fi
    if [ -n "$apt_pid" ] && ! wait "$apt_pid"; then
        log "apt-get install ${missing[*]} failed"
        return 1
    fi
    # The Debian package starts services we do not use; our tests run their own.
    systemctl disable --now pgbouncer >/dev/null 2>&1 || true
    if [ "${1:-}" = demo ]; then
        ensure_pgrx_majors 15
    else
        ensure_pgrx_majors "$(majors)"
    fi
}

# Build and install the extension into the system PostgreSQL, plus the test token minter.
install_extension() {
    local profile=${1:-}
    log "building and installing auth_jwt ${profile:+($profile)}"
    local out=/tmp/auth_jwt-install.log
    if ! (cd "$ROOT" && cargo pgrx install --pg-config "$PG_CONFIG" ${profile:+--$profile} >"$out" 2>&1); then
        cat "$out" >&2
        return 1
    fi
    # Install scripts of earlier releases, for the upgrade tests (ALTER EXTENSION ... UPDATE).
    cp "$ROOT"/sql/archive/auth_jwt--*.sql "$("$PG_CONFIG" --sharedir)/extension/"
    build_mint
}

# cargo-pgrx 0.18.1 builds the library with this --config (it keeps pgrx's schema section at
# link time). Builds that share the library's dependencies pass it too, or cargo compiles every one
# of them again for different flags (half a minute of a fresh demo).
PGRX_LINK_CONFIG='target.'"'"'cfg(all(target_family = "unix", not(target_os = "macos")))'"'"'.rustflags = ["-C", "link-arg=-Wl,--no-gc-sections"]'

# The test-only token minter (crates/mint), for the demo and the tests.
build_mint() {
    (cd "$ROOT" && cargo --config "$PGRX_LINK_CONFIG" build -q -p auth_jwt_mint)
    export MINT="$ROOT/target/debug/mint"
}

# start_cluster NAME PORT [CONF]: a fresh cluster in /tmp, trust auth on loopback and a private
# socket; CONF: more postgresql.conf lines.
start_cluster() {
    local name=$1 port=$2 extra=${3:-}
    export PGDATA_DIR=/tmp/auth_jwt-$name
    export PGHOST=/tmp/auth_jwt-$name-sock PGPORT=$port PGUSER=postgres
    stop_cluster "$name"
    rm -rf "$PGDATA_DIR" "$PGHOST"
    install -d -o postgres -g postgres "$PGHOST"
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres >/dev/null
    cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PGHOST'
fsync = off
max_connections = 200
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_prepared_transactions = 10
$extra
CONF
    echo "host replication all 127.0.0.1/32 trust" >>"$PGDATA_DIR/pg_hba.conf"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/log" -w start >/dev/null
}

stop_cluster() {
    local dir=/tmp/auth_jwt-$1
    if [ -f "$dir/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

psql_q() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -q "$@"; }

# A virtualenv with the pinned test dependencies.
ensure_venv() {
    local req=$ROOT/tests/requirements.txt stamp=$ROOT/.venv/.installed
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
        python3 -m venv "$ROOT/.venv"
    fi
    if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
        log "pip install -r tests/requirements.txt"
        "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r "$req"
        cp "$req" "$stamp"
    fi
}

# The real better-auth (and pg) for the interop tests, from the lock file.
ensure_node_deps() {
    local dir=$ROOT/tests/interop
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        log "npm ci (tests/interop: better-auth, pg)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
}
