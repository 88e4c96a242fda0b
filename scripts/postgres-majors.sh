# PostgreSQL majors beyond Debian 12's own 15, for pgrx builds and tests against pg17/pg18.
# Debian 12 packages only 15 and binary packages from other suites must not be mixed in, so we
# build the upstream tarball of Debian's own source package (trixie: 17, sid: 18) into a private
# prefix. Sourced by scripts/lib.sh; standalone use:
#     source scripts/postgres-majors.sh; ensure_postgres_major 17; ensure_pgrx_majors "15 17 18"
# Runs as root (apt-get, /opt). Every step is skipped when its result is already there.

declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }

PG_PREFIX_BASE=${AUTH_JWT_PG_PREFIX_BASE:-/opt/auth_jwt}
PG_SRC_LIST=/etc/apt/sources.list.d/auth_jwt-src.sources
# configure needs bison/flex: tarballs of 17+ no longer ship the generated parsers.
PG_BUILD_DEPS=(build-essential bison flex pkg-config libicu-dev libreadline-dev zlib1g-dev curl)

# pg_config_of N: the pg_config of major N (15 is Debian's package, the others are ours).
pg_config_of() {
    case $1 in
        15) echo /usr/lib/postgresql/15/bin/pg_config ;;
        17 | 18) echo "$PG_PREFIX_BASE/pg$1/bin/pg_config" ;;
        *) log "no PostgreSQL $1 on this machine (15, 17 and 18 only)" && return 1 ;;
    esac
}

# Source entries only (deb-src), on Debian's mirror and keyring: nothing binary from trixie/sid.
_pg_add_deb_src() {
    local want="Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    [ "$(cat "$PG_SRC_LIST" 2>/dev/null)" = "$want" ] || printf '%s\n' "$want" >"$PG_SRC_LIST"
}

# When the mirror's Sources index names a version whose files it no longer serves (seen for
# postgresql-17 17.12 in trixie), fall back to a pinned version from the same pool, checked against
# the SHA-256 its .dsc lists, pinned here.
declare -A PG_PINNED=(
    [17]="17.11 dd27f2b3c59e73ed14aa3324901242bf69a032a6347805f274e6260322d42979"
)

# The upstream tarball of Debian's source package, checked by apt against the signed Sources
# index (Debian's patches are not needed). Stale lists (the mirror moved on) get one refresh.
_pg_download() {
    apt-get source -q --download-only "postgresql-$1" >download.log 2>&1 ||
        { apt-get update -q >/dev/null && apt-get source -q --download-only "postgresql-$1" >download.log 2>&1; } ||
        _pg_download_pinned "$1" ||
        { cat download.log >&2; return 1; }
}

_pg_download_pinned() {
    local pin=${PG_PINNED[$1]:-} version sha file
    [ -n "$pin" ] || return 1
    read -r version sha <<<"$pin"
    file="postgresql-$1_$version.orig.tar.bz2"
    log "apt-get source postgresql-$1 failed; using Debian's pool copy of $version (pinned SHA-256)"
    rm -f postgresql-"$1"_*.orig.tar.*
    curl -fsS -m 600 -o "$file" "http://deb.debian.org/debian/pool/main/p/postgresql-$1/$file" >>download.log 2>&1 &&
        echo "$sha  $file" | sha256sum -c --quiet - >>download.log 2>&1
}

# ensure_postgres_major N: build and install PostgreSQL N into $PG_PREFIX_BASE/pgN, once.
ensure_postgres_major() {
    local major=$1 prefix="$PG_PREFIX_BASE/pg$1"
    local stamp="$prefix/.auth_jwt-build-complete" build="/var/tmp/auth_jwt-pg$1-build"
    [ -x "$prefix/bin/pg_config" ] && [ -f "$stamp" ] && return 0
    local t0=$SECONDS missing=() p
    log "building PostgreSQL $major into $prefix (several minutes, once)"

    _pg_add_deb_src
    for p in "${PG_BUILD_DEPS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    # One apt-get update covers both the missing build deps and the new deb-src lists.
    if ((${#missing[@]})) || [ -z "$(apt-cache showsrc "postgresql-$major" 2>/dev/null)" ]; then
        apt-get update -q >/dev/null
    fi
    if ((${#missing[@]})); then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi

    # Fresh build dir and prefix: a previous attempt without a stamp may have left half of either.
    rm -rf "$build" "$prefix"
    mkdir -p "$build"
    # Each step chained with &&: `set -e` does not apply inside a command followed by ||.
    (
        cd "$build" && _pg_download "$major" &&
            tar -xf "$(ls postgresql-"$major"_*.orig.tar.* | grep -v '\.asc$')" &&
            cd postgresql-"$major".*/ &&
            # Same flags as `cargo pgrx init` uses for the PostgreSQL builds it manages (port 28800+N).
            # `make install` covers server, client tools and PGXS, with pg_regress in
            # $(pg_config --pkglibdir)/pgxs/src/test/regress/.
            {
                CPPFLAGS="-DUSE_ASSERT_CHECKING=1 -DRANDOMIZE_ALLOCATED_MEMORY=1" ./configure \
                    --prefix="$prefix" --with-pgport=$((28800 + major)) --enable-debug --enable-cassert &&
                    make -j"$(nproc)" && make install
            } >"$build/build.log" 2>&1 ||
            { tail -n 40 "$build/build.log" >&2 2>/dev/null; exit 1; }
    ) || { log "building PostgreSQL $major failed, see $build"; return 1; }
    "$prefix/bin/pg_config" --version >"$stamp"
    rm -rf "$build"
    log "$(cat "$stamp") installed in $prefix in $((SECONDS - t0)) s"
}

# ensure_pgrx_majors "15 17 18": build any of those majors that is missing, and register with
# cargo-pgrx every major this machine has. `cargo pgrx init` only records the given pg_configs (it
# downloads nothing for them) and rewrites the whole config, so it always gets the full list.
ensure_pgrx_majors() {
    local config="${PGRX_HOME:-$HOME/.pgrx}/config.toml" args=() m need=
    for m in $1; do
        [ "$m" = 15 ] || ensure_postgres_major "$m"
    done
    for m in 15 17 18; do
        [ -x "$(pg_config_of "$m")" ] || continue
        grep -q "^pg$m = \"$(pg_config_of "$m")\"" "$config" 2>/dev/null || need=1
        args+=("--pg$m" "$(pg_config_of "$m")")
    done
    [ -n "$need" ] || return 0
    log "cargo pgrx init ${args[*]}"
    cargo pgrx init "${args[@]}" >/dev/null
}
