#!/usr/bin/env bash
# Make a git >= 2.41 available to the tests. Only git 2.41 and newer pass
# `password_expiry_utc` and `oauth_refresh_token` to credential helpers, and
# tests/scripting/test_helpers.py drives git-credential-credd through the real
# `git credential`. When the system git is new enough this does nothing.
#
# Otherwise git's source comes from Debian stable through `apt-get source`, with
# a private apt configuration made from this machine's own Debian entry (the same
# mirror URI and signing keyring, suite `stable`, deb-src only; the system's
# sources and lists are left alone), and only the `git` binary is built into
# .tools/git/ (bin/git, plus libexec/git-core/git so git's exec path is
# complete), once: a second run is a quick version check. Why a build: the
# running release's backports carry no git (bookworm-backports dropped it), and
# stable's binary package needs a newer libc than oldstable has.
#
# Under CI (CREDD_CI=1) a git that cannot be had fails the run; elsewhere the
# real-git test skips with the reason (see scripts/apt.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

PROGRAM=modern-git
MIN_MAJOR=2 MIN_MINOR=41
PREFIX=$ROOT/.tools/git
APT_DIR=$ROOT/.tools/apt

# new_enough BINARY: its `--version` is >= MIN_MAJOR.MIN_MINOR
new_enough() {
    local v major minor
    v=$("$1" --version 2>/dev/null) || return 1
    v=${v#git version }
    major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
    [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
    (( major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR) ))
}

# debian_entry: "URI KEYRING" of this machine's apt entry for its own Debian release
# (KEYRING is "-" when the entry names none), from apt's own reading of its sources
debian_entry() {
    local codename uri where file at keyring
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || return 1
    read -r uri where < <(apt-get indextargets --format '$(TARGET_OF) $(ORIGIN) $(CODENAME) $(REPO_URI) $(SOURCESENTRY)' |
                          awk -v c="$codename" '$1 == "deb" && $2 == "Debian" && $3 == c { print $4, $5; exit }')
    [ -n "${uri:-}" ] || return 1
    file=${where%:*} at=${where##*:}
    if [[ $file == *.sources ]]; then  # deb822: the entry is the at-th stanza
        keyring=$(awk -v n="$at" 'BEGIN { RS = "" } NR == n' "$file" | sed -n 's/^Signed-By:[[:space:]]*//p')
    else                               # one-line format: the at-th line's [signed-by=...]
        keyring=$(sed -n "${at}p" "$file" | sed -n 's/.*signed-by=\([^] ]*\).*/\1/p')
    fi
    echo "$uri ${keyring:--}"
}

if command -v git >/dev/null && new_enough git; then
    exit 0
fi
if [ -x "$PREFIX/bin/git" ] && new_enough "$PREFIX/bin/git" \
        && [ -e "$PREFIX/libexec/git-core/git" ]; then
    exit 0
fi
have=$(git --version 2>/dev/null || echo "no git")
WANT="git >= $MIN_MAJOR.$MIN_MINOR (the system has $have)"
can_apt || missing "$PROGRAM" "$WANT: building one needs root and apt-get"
LOG=$(new_log "$PROGRAM")

# --- build tools ---------------------------------------------------------
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v make >/dev/null || need+=(make)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v xz >/dev/null || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
    apt_install "$PROGRAM" "$LOG" "${need[@]}" || missing "$PROGRAM" "$WANT: could not install ${need[*]}"
fi

# --- source, through apt ---------------------------------------------------
read -r uri keyring < <(debian_entry) \
    || missing "$PROGRAM" "$WANT: found no Debian entry for this release in apt's sources"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
{
    echo "# Made by scripts/modern-git.sh from this machine's Debian entry: git's source only."
    echo "Types: deb-src"
    echo "URIs: $uri"
    echo "Suites: stable"
    echo "Components: main"
    [ "$keyring" = - ] || echo "Signed-By: $keyring"
} >"$APT_DIR/sources.sources"
PRIVATE=(-o "Dir::Etc::sourcelist=$APT_DIR/sources.sources" -o Dir::Etc::sourceparts=-
         -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
         -o APT::Sandbox::User=root)

echo "$PROGRAM: $WANT; building Debian stable's git into .tools/git (once, ~2 min; log: $LOG)"
start=$SECONDS
work=$(mktemp -d "$ROOT/.tools/git-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
apt_update "$LOG" "${PRIVATE[@]}" \
    || { show_log "$LOG"; missing "$PROGRAM" "$WANT: could not read stable's source index from $uri"; }
(cd "$work" && apt_get "$LOG" "${PRIVATE[@]}" source --download-only git) \
    || { show_log "$LOG"; missing "$PROGRAM" "$WANT: apt-get source git failed"; }

# --- build ---------------------------------------------------------------
tarball=$(find "$work" -maxdepth 1 -name 'git_*.orig.tar.*' | head -n 1)
[ -n "$tarball" ] || die "$PROGRAM" "apt-get source left no git_*.orig.tar.* in $work"
tar -xf "$tarball" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'git-*' | head -n 1)
[ -n "$src" ] || die "$PROGRAM" "unexpected layout of $tarball"
# Only the `git` binary (every builtin, `credential` included). RUNTIME_PREFIX
# makes it find its exec path relative to itself, so .tools/ may move.
if ! make -C "$src" -j"$(nproc 2>/dev/null || echo 2)" prefix="$PREFIX" RUNTIME_PREFIX=YesPlease \
        NO_CURL=1 NO_EXPAT=1 NO_GETTEXT=1 NO_TCLTK=1 NO_PERL=1 NO_PYTHON=1 NO_OPENSSL=1 \
        git >>"$LOG" 2>&1; then
    show_log "$LOG"
    die "$PROGRAM" "building git failed (full log: $LOG)"
fi

# --- install (staged, then moved into place) -----------------------------
stage=$work/stage
install -D -m 755 "$src/git" "$stage/bin/git"
mkdir -p "$stage/libexec/git-core"
ln -s ../../bin/git "$stage/libexec/git-core/git"
rm -rf "$PREFIX"
mv "$stage" "$PREFIX"

new_enough "$PREFIX/bin/git" || die "$PROGRAM" "the built git does not report a version >= $MIN_MAJOR.$MIN_MINOR"
[ "$("$PREFIX/bin/git" --exec-path)" = "$PREFIX/libexec/git-core" ] \
    || die "$PROGRAM" "the built git's exec path is $("$PREFIX/bin/git" --exec-path), not $PREFIX/libexec/git-core"
echo "$PROGRAM: $("$PREFIX/bin/git" --version) in .tools/git/bin/git ($((SECONDS - start)) s)"
