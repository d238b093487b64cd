#!/usr/bin/env bash
# Make a git >= 2.41 available to the tests. Only git 2.41 and newer pass
# `password_expiry_utc` and `oauth_refresh_token` to credential helpers, and
# tests/scripting/test_helpers.py drives git-credential-credd through the real
# `git credential`. When the system git is new enough this does nothing.
# Otherwise it builds git from Debian's source tarball into .tools/git/
# (bin/git, plus libexec/git-core/git so git's exec path is complete), once:
# a second run is a quick version check. Failure is loud and non-zero:
# `make test` must not run without a modern git.
set -euo pipefail

MIN_MAJOR=2 MIN_MINOR=41
PIN_VERSION=2.47.3
PIN_SHA256=9c2eb1250781b3e5bfef098572d07fdf132d67e6c065e4307332ade9819a1501
POOL=http://deb.debian.org/debian
PIN_URL=$POOL/pool/main/g/git/git_${PIN_VERSION}.orig.tar.xz
SOURCES_URL=$POOL/dists/trixie/main/source/Sources.xz

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
TOOLS=$ROOT/.tools
PREFIX=$TOOLS/git
LOG=$TOOLS/git-build.log

die() { echo "modern-git: error: $*" >&2; exit 1; }

# new_enough BINARY: its `--version` is >= MIN_MAJOR.MIN_MINOR
new_enough() {
    local v major minor
    v=$("$1" --version 2>/dev/null) || return 1
    v=${v#git version }
    major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
    [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
    (( major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR) ))
}

if command -v git >/dev/null && new_enough git; then
    exit 0
fi
if [ -x "$PREFIX/bin/git" ] && new_enough "$PREFIX/bin/git" \
        && [ -e "$PREFIX/libexec/git-core/git" ]; then
    exit 0
fi

# --- build tools ---------------------------------------------------------
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v make >/dev/null || need+=(make)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v curl >/dev/null || need+=(curl ca-certificates)
command -v xz >/dev/null || need+=(xz-utils)
command -v sha256sum >/dev/null || need+=(coreutils)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "modern-git: installing build packages: ${need[*]}"
        mkdir -p "$TOOLS"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") \
            >"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; die "could not install ${need[*]}"; }
    else
        die "git >= $MIN_MAJOR.$MIN_MINOR is needed and building it needs: ${need[*]} (install them, or a newer git)"
    fi
fi

# --- source --------------------------------------------------------------
have=$(git --version 2>/dev/null || echo "no git")
echo "modern-git: system has $have; building git >= $MIN_MAJOR.$MIN_MINOR into .tools/git (once, ~2 min)"
start=$SECONDS
mkdir -p "$TOOLS"
work=$(mktemp -d "$TOOLS/git-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
: >"$LOG"

tarball=$work/git.orig.tar.xz
sha=$PIN_SHA256
if ! curl -fsSL --retry 2 -o "$tarball" "$PIN_URL" 2>>"$LOG"; then
    # Debian drops superseded versions from the pool: ask trixie's source index
    # which git tarball is current, and what its sha256 is.
    echo "modern-git: $PIN_URL is gone; looking up trixie's current git source" | tee -a "$LOG"
    stanza=$(curl -fsSL --retry 2 "$SOURCES_URL" | xz -dc |
             awk 'BEGIN { RS = "" } /^Package: git\n/ { print }') \
        || die "could not read $SOURCES_URL"
    dir=$(printf '%s\n' "$stanza" | sed -n 's/^Directory: //p')
    line=$(printf '%s\n' "$stanza" |
           grep -E '^ [0-9a-f]{64} [0-9]+ git_[^ ]+\.orig\.tar\.(xz|gz)$' | head -n 1) \
        || die "no sha256 for git's orig tarball in $SOURCES_URL"
    read -r sha _ name <<<"$line"
    [ -n "$dir" ] && [ -n "$name" ] || die "could not parse git's stanza in $SOURCES_URL"
    curl -fsSL --retry 2 -o "$tarball" "$POOL/$dir/$name" 2>>"$LOG" \
        || die "could not download $POOL/$dir/$name"
fi
echo "$sha  $tarball" | sha256sum -c --status - \
    || die "sha256 mismatch for the git tarball (expected $sha)"

# --- build ---------------------------------------------------------------
tar -xf "$tarball" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'git-*' | head -n 1)
[ -n "$src" ] || die "unexpected tarball layout"
# Only the `git` binary (every builtin, `credential` included). RUNTIME_PREFIX
# makes it find its exec path relative to itself, so .tools/ may move.
if ! make -C "$src" -j"$(nproc 2>/dev/null || echo 2)" prefix="$PREFIX" RUNTIME_PREFIX=YesPlease \
        NO_CURL=1 NO_EXPAT=1 NO_GETTEXT=1 NO_TCLTK=1 NO_PERL=1 NO_PYTHON=1 NO_OPENSSL=1 \
        git >>"$LOG" 2>&1; then
    echo "---- last lines of $LOG ----" >&2
    tail -n 30 "$LOG" >&2
    die "building git failed (full log: $LOG)"
fi

# --- install (staged, then moved into place) -----------------------------
stage=$work/stage
install -D -m 755 "$src/git" "$stage/bin/git"
mkdir -p "$stage/libexec/git-core"
ln -s ../../bin/git "$stage/libexec/git-core/git"
rm -rf "$PREFIX"
mv "$stage" "$PREFIX"

new_enough "$PREFIX/bin/git" || die "the built git does not report a version >= $MIN_MAJOR.$MIN_MINOR"
[ "$("$PREFIX/bin/git" --exec-path)" = "$PREFIX/libexec/git-core" ] \
    || die "the built git's exec path is $("$PREFIX/bin/git" --exec-path), not $PREFIX/libexec/git-core"
echo "modern-git: $("$PREFIX/bin/git" --version) in .tools/git/bin/git ($((SECONDS - start)) s)"
