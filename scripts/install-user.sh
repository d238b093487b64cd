#!/usr/bin/env bash
# `make install-user`: credd for one user, without root and without touching the
# system Python (which Debian 12 and Ubuntu 23.04+ refuse to let pip change: PEP 668).
#
#   install-user.sh VENV BINDIR
#
# A private venv at VENV (make passes $XDG_DATA_HOME/credd/venv), credd installed
# into it (not editable: the checkout can go; runtime dependencies only), the fast
# `credd` launcher written over pip's script, and credd, credtui and the git and
# docker credential helpers linked into BINDIR (~/.local/bin). Run it again to
# update: the venv is reused unless its Python is gone, and the links are replaced.
set -eu
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
venv=$(absolute "$1") bindir=$(absolute "$2")
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
commands="credd credtui git-credential-credd docker-credential-credd"

for name in $commands; do   # never replace something of someone else's
    link=$bindir/$name
    if [ -e "$link" ] || [ -L "$link" ]; then
        case $(readlink "$link" || true) in
            "$venv/bin/$name") ;;
            *) echo "install-user: $link exists and is not credd's link into $venv;" \
                    "remove it or set BINDIR" >&2; exit 1 ;;
        esac
    fi
done

PYTHON=$python bash scripts/check-venv.sh "$venv"
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" || {
        echo "install-user: '$python -m venv' failed (on Debian/Ubuntu: apt install python3-venv)" >&2
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
echo "commands linked into $bindir: $commands"
case ":$PATH:" in
    *":$bindir:"*) echo "$bindir is on your PATH: run \`credd --help\`" ;;
    *) echo "$bindir is NOT on your PATH; add it, e.g. in ~/.profile:"
       echo "    export PATH=\"$bindir:\$PATH\"" ;;
esac
