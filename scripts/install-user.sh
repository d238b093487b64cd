#!/usr/bin/env bash
# `make install-user` / `make uninstall-user`: credd for one user, without root and
# without touching the system Python (which Debian 12 and Ubuntu 23.04+ do not let
# pip change: PEP 668, "externally-managed-environment").
#
#   install-user.sh install|uninstall VENV BINDIR
#
# install: a private venv at VENV (make passes $XDG_DATA_HOME/credd-venv), credd
# installed into it (not editable, so the checkout can go; runtime dependencies
# only), the fast `credd` launcher written over pip's script, and credd, credtui and
# the git and docker credential helpers linked into BINDIR (~/.local/bin). Run it
# again to update: the venv is kept unless its Python is gone, the links replaced.
# The venv is not under $XDG_DATA_HOME/credd: that is the vault's 0700 directory.
set -eu
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
action=$1 venv=$(absolute "$2") bindir=$(absolute "$3")
python=${PYTHON:-python3}
commands="credd credtui git-credential-credd docker-credential-credd"
cd "$(dirname "$0")/.."

# BINDIR/NAME is free or our own link; anything else is someone else's: stop.
check_links() {
    for name in $commands; do
        link=$bindir/$name
        [ -e "$link" ] || [ -L "$link" ] || continue
        [ "$(readlink "$link" || true)" = "$venv/bin/$name" ] && continue
        echo "install-user: $link exists and is not credd's link into $venv;" \
             "remove it or set BINDIR" >&2
        exit 1
    done
}

install() {
    check_links
    PYTHON=$python bash scripts/check-venv.sh "$venv"
    if [ ! -x "$venv/bin/python" ]; then
        mkdir -p "$(dirname "$venv")"
        "$python" -m venv "$venv" || {
            echo "install-user: '$python -m venv' failed" \
                 "(Debian/Ubuntu: apt install python3-venv)" >&2
            exit 1
        }
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade .
    "$venv/bin/python" -m credd.launcher install "$venv/bin"
    mkdir -p "$bindir"
    for name in $commands; do
        ln -sfn "$venv/bin/$name" "$bindir/$name"
    done
    echo "credd $("$venv/bin/credd" --version | cut -d' ' -f2) installed in $venv"
    echo "linked into $bindir: $commands"
    case ":$PATH:" in
        *":$bindir:"*) echo "$bindir is on your PATH: try \`credd --help\`" ;;
        *) echo "$bindir is NOT on your PATH; add it, e.g. in ~/.profile:"
           echo "    export PATH=\"$bindir:\$PATH\"" ;;
    esac
}

uninstall() {
    check_links
    for name in $commands; do
        rm -f "$bindir/$name"
    done
    rm -rf "$venv"
    echo "removed $venv and the links in $bindir (the vault and its agent are untouched)"
}

case $action in
    install|uninstall) "$action" ;;
    *) echo "usage: $0 install|uninstall VENV BINDIR" >&2; exit 2 ;;
esac
