#!/usr/bin/env bash
# `make run`: start an agent on the default vault if none answers, then open the TUI
# (which offers to create the vault, or asks for the passphrase).
set -eu
cd "$(dirname "$0")/.."
bin=.venv/bin
rc=0
"$bin/credd" status >/dev/null 2>&1 || rc=$?
if [ "$rc" = 4 ]; then   # no agent reachable
    eval "$("$bin/credd" agent -s)"
    echo "started a credd agent on $CREDD_SOCK (pid $CREDD_PID); stop it with: credd stop"
fi
exec "$bin/credtui"
