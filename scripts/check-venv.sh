#!/usr/bin/env bash
# check-venv.sh VENV: remove VENV when its interpreter cannot start, or is another
# Python (major.minor) than $PYTHON (default python3) runs. A pyenv uninstall, a
# distribution upgrade or a moved checkout leaves a venv whose install stamps claim
# an install that cannot run; remade from scratch, it installs again.
# Says so on stderr; prints nothing and changes nothing for a healthy or absent venv.
set -u
venv=$1
python=${PYTHON:-python3}
[ -e "$venv" ] || exit 0
version='import sys; print("%d.%d" % sys.version_info[:2])'
want=$("$python" -c "$version" 2>/dev/null) || exit 0  # no Python to remake it with: leave it
have=$("$venv/bin/python" -c "$version" 2>/dev/null) || have=""
[ "$have" = "$want" ] && exit 0
echo "$venv: its Python (${have:-cannot start}) is not $python ($want); making it again" >&2
rm -rf "$venv"
