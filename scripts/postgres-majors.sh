# PostgreSQL majors beyond Debian 12's own 15, built from the upstream tarball of Debian's own
# source package (trixie: 17, sid: 18): Debian 12 packages only 15, and binary packages from other
# suites must not be mixed in. Two builds of each major, for two jobs:
# - development builds (assertions on, as pgrx builds its own) in a private prefix,
#   $PG_PREFIX_BASE/pgN: the tests run against them, so that assertion failures surface;
# - production servers, configured as Debian configures its postgresql-N (no assertions, -O2), in
#   Debian's paths (/usr/lib/postgresql/N, /usr/share/postgresql/N), installed as a local package
#   named postgresql-N: the Debian packages of auth_jwt are built against them and tested on them,
#   as a DBA installs them on Debian's or PGDG's server.
# Sourced by scripts/lib.sh; standalone use:
#     source scripts/postgres-majors.sh; ensure_postgres_major 17; ensure_pgrx_majors "15 17 18"
#     source scripts/postgres-majors.sh; ensure_production_server 17
# Runs as root (apt-get, /opt). Every step is skipped when its result is already there.

declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }

PG_PREFIX_BASE=${AUTH_JWT_PG_PREFIX_BASE:-/opt/auth_jwt}
PG_SRC_LIST=/etc/apt/sources.list.d/auth_jwt-src.sources
# configure needs bison/flex: tarballs of 17+ no longer ship the generated parsers.
PG_BUILD_DEPS=(build-essential bison flex pkg-config libicu-dev libreadline-dev zlib1g-dev curl)
# What Debian's configure options need beyond that (see _pg_configure_production).
PG_PRODUCTION_DEPS=(gettext libssl-dev libxml2-dev libxslt1-dev uuid-dev libkrb5-dev libldap2-dev libpam0g-dev
    liblz4-dev libzstd-dev libsystemd-dev libselinux1-dev)

# pg_config_of N: the pg_config of major N's development build (15 is Debian's package).
pg_config_of() {
    case $1 in
        15) echo /usr/lib/postgresql/15/bin/pg_config ;;
        17 | 18) echo "$PG_PREFIX_BASE/pg$1/bin/pg_config" ;;
        *) log "no PostgreSQL $1 on this machine (15, 17 and 18 only)" && return 1 ;;
    esac
}

# production_pg_config_of N: the pg_config of major N as a production server has it, in Debian's
# paths (15 is Debian's own package; 17 and 18 come from ensure_production_server).
production_pg_config_of() {
    echo "/usr/lib/postgresql/$1/bin/pg_config"
}

# debian_mirror: the Debian archive this machine's apt already uses for its own release (read from
# /etc/apt/sources.list and sources.list.d, one-line or deb822), without a trailing slash.
debian_mirror() {
    local codename uri
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    uri=$(
        {
            # One-line format: deb [options] URI suite components...
            sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]*\)\?//p' /etc/apt/sources.list \
                /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v s="$codename" '$2 == s { print $1; exit }'
            # deb822: stanzas with Types, URIs, Suites (and Enabled).
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$codename" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    types = uris = suites = ""; enabled = "yes"
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^Types:/) types = $i
                        if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
                        if ($i ~ /^Suites:/) suites = $i
                        if ($i ~ /^Enabled:/) enabled = tolower($i)
                    }
                    if (types ~ /[ \t]deb([ \t]|$)/ && enabled !~ /no/ && (suites " ") ~ ("[ \t]" s "[ \t]")) {
                        split(uris, u, /[ \t]+/); print u[1]; exit
                    }
                }'
        } | head -n 1
    )
    [ -n "$uri" ] || { log "no Debian archive for '$codename' in this machine's apt sources"; return 1; }
    echo "${uri%/}"
}

# Source entries only (deb-src), on this machine's Debian mirror and keyring: nothing binary from
# trixie/sid.
_pg_add_deb_src() {
    local mirror want
    mirror=$(debian_mirror) || return 1
    want="Types: deb-src
URIs: $mirror
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
    local pin=${PG_PINNED[$1]:-} version sha file mirror
    [ -n "$pin" ] || return 1
    read -r version sha <<<"$pin"
    file="postgresql-$1_$version.orig.tar.bz2"
    mirror=$(debian_mirror) || return 1
    log "apt-get source postgresql-$1 failed; using Debian's pool copy of $version (pinned SHA-256)"
    rm -f postgresql-"$1"_*.orig.tar.*
    curl -fsS -m 600 -o "$file" "$mirror/pool/main/p/postgresql-$1/$file" >>download.log 2>&1 &&
        echo "$sha  $file" | sha256sum -c --quiet - >>download.log 2>&1
}

# _pg_apt_get MAJOR PACKAGE...: install what is missing (one apt-get update also covers the new
# deb-src lists).
_pg_apt_get() {
    local major=$1 missing=() p
    shift
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if ((${#missing[@]})) || [ -z "$(apt-cache showsrc "postgresql-$major" 2>/dev/null)" ]; then
        apt-get update -q >/dev/null
    fi
    if ((${#missing[@]})); then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

# _pg_build MAJOR BUILD_DIR CONFIGURE_FUNCTION [MAKE_VARIABLES...]: download, configure and
# `make install` (with the given variables, e.g. DESTDIR=...) in a fresh build directory.
_pg_build() {
    local major=$1 build=$2 configure=$3
    shift 3
    rm -rf "$build"
    mkdir -p "$build"
    # Each step chained with &&: `set -e` does not apply inside a command followed by ||.
    (
        cd "$build" && _pg_download "$major" &&
            tar -xf "$(ls postgresql-"$major"_*.orig.tar.* | grep -v '\.asc$')" &&
            cd postgresql-"$major".*/ &&
            {
                "$configure" "$major" && make -j"$(nproc)" "$@" && make install "$@"
            } >"$build/build.log" 2>&1 ||
            { tail -n 40 "$build/build.log" >&2 2>/dev/null; exit 1; }
    )
}

# The development build: the flags `cargo pgrx init` uses for the PostgreSQL builds it manages
# (port 28800+N). `make install` covers server, client tools and PGXS, with pg_regress in
# $(pg_config --pkglibdir)/pgxs/src/test/regress/.
_pg_configure_development() {
    CPPFLAGS="-DUSE_ASSERT_CHECKING=1 -DRANDOMIZE_ALLOCATED_MEMORY=1" ./configure \
        --prefix="$PG_PREFIX_BASE/pg$1" --with-pgport=$((28800 + $1)) --enable-debug --enable-cassert
}

# The production server: Debian's configure options for postgresql-N (as `pg_config --configure`
# of Debian 12's postgresql-15 shows them: same compiler flags, no assertions, the same features
# and Debian's paths), except the procedural languages, LLVM JIT, dtrace probes and TAP tests,
# which change nothing an extension is compiled against, and --disable-rpath: libpq stays private
# to this server (in its lib directory), so the system's libpq5 is left alone.
_pg_configure_production() {
    local m=$1
    ./configure --build=x86_64-linux-gnu --prefix=/usr --localstatedir=/var \
        --bindir="/usr/lib/postgresql/$m/bin" --libdir="/usr/lib/postgresql/$m/lib" \
        --includedir="/usr/include/postgresql/$m" --datarootdir=/usr/share/ --datadir="/usr/share/postgresql/$m" \
        --mandir="/usr/share/postgresql/$m/man" --docdir="/usr/share/doc/postgresql-doc-$m" \
        --sysconfdir=/etc/postgresql-common --libexecdir=/usr/lib/postgresql/ \
        --with-extra-version=" (auth_jwt test server, Debian configuration)" \
        --enable-nls --enable-thread-safety --enable-debug --with-uuid=e2fs --with-gnu-ld --with-gssapi \
        --with-ldap --with-pam --with-openssl --with-libxml --with-libxslt --with-icu --with-lz4 --with-zstd \
        --with-systemd --with-selinux --with-pgport=5432 --with-system-tzdata=/usr/share/zoneinfo \
        CFLAGS="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fno-omit-frame-pointer" \
        CPPFLAGS="-Wdate-time -D_FORTIFY_SOURCE=2" LDFLAGS="-Wl,-z,relro -Wl,-z,now"
}

# ensure_postgres_major N: build and install PostgreSQL N's development build into
# $PG_PREFIX_BASE/pgN, once.
ensure_postgres_major() {
    local major=$1 prefix="$PG_PREFIX_BASE/pg$1"
    local stamp="$prefix/.auth_jwt-build-complete" build="/var/tmp/auth_jwt-pg$1-build"
    [ -x "$prefix/bin/pg_config" ] && [ -f "$stamp" ] && return 0
    local t0=$SECONDS
    log "building PostgreSQL $major into $prefix (several minutes, once)"
    _pg_add_deb_src
    _pg_apt_get "$major" "${PG_BUILD_DEPS[@]}"
    # A previous attempt without a stamp may have left half a prefix.
    rm -rf "$prefix"
    _pg_build "$major" "$build" _pg_configure_development ||
        { log "building PostgreSQL $major failed, see $build"; return 1; }
    "$prefix/bin/pg_config" --version >"$stamp"
    rm -rf "$build"
    log "$(cat "$stamp") installed in $prefix in $((SECONDS - t0)) s"
}

# ensure_production_server N: PostgreSQL N configured as Debian configures it, installed with
# apt-get as a local package postgresql-N (Debian 12 has none of that name), once. 15 is Debian's.
ensure_production_server() {
    local major=$1 build="/var/tmp/auth_jwt-pg$1-production"
    [ "$major" = 15 ] && return 0
    local marker="/usr/lib/postgresql/$major/.auth_jwt-production-server"
    dpkg -s "postgresql-$major" >/dev/null 2>&1 && [ -f "$marker" ] && return 0
    local t0=$SECONDS root="$build/root"
    log "building a production PostgreSQL $major as Debian configures it (several minutes, once)"
    _pg_add_deb_src
    _pg_apt_get "$major" "${PG_BUILD_DEPS[@]}" "${PG_PRODUCTION_DEPS[@]}"
    _pg_build "$major" "$build" _pg_configure_production DESTDIR="$root" ||
        { log "building the production PostgreSQL $major failed, see $build"; return 1; }
    local version depends
    version=$("$root/usr/lib/postgresql/$major/bin/pg_config" --version | awk '{print $2}')
    # The packages of the shared libraries it links (its own libpq is inside the package). ldd
    # names /lib/... where dpkg, on a merged-/usr system, may know /usr/lib/...: ask for both.
    depends=$(
        find "$root" -type f \( -perm -u+x -o -name '*.so*' \) -exec ldd {} + 2>/dev/null |
            awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
            while read -r so; do dpkg -S "$so" 2>/dev/null || dpkg -S "/usr${so#/usr}" 2>/dev/null || true; done |
            cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g'
    ) || true
    : >"$root$marker"
    mkdir -p "$root/DEBIAN"
    cat >"$root/DEBIAN/control" <<CONTROL
Package: postgresql-$major
Version: $version-0auth.jwt1
Architecture: $(dpkg --print-architecture)
Maintainer: auth_jwt maintainers <maintainers@auth-jwt.invalid>
Depends: $depends, tzdata
Section: database
Priority: optional
Description: PostgreSQL $major as Debian configures it, built by auth_jwt's tests
 The upstream tarball of Debian's postgresql-$major source package, configured with Debian's
 options (no assertions) and installed in Debian's paths, so that auth_jwt's packages are
 tested on a production server. Not Debian's package.
CONTROL
    dpkg-deb --root-owner-group -Zxz --build "$root" "$build/postgresql-$major.deb" >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$build/postgresql-$major.deb" >/dev/null
    rm -rf "$build"
    log "production PostgreSQL $version installed as package postgresql-$major in $((SECONDS - t0)) s"
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
