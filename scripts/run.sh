#!/usr/bin/env bash
# `make run`: start an agent on the default vault if none answers, then open the TUI
# (which offers to create the vault, or asks for the passphrase). The TUI takes the
# whole screen, so what was started, and how to stop it, is said after it quits.
set -eu
cd "$(dirname "$0")/.."
bin=$PWD/.venv/bin
rc=0
"$bin/credd" status >/dev/null 2>&1 || rc=$?
started=""
if [ "$rc" = 4 ]; then   # no agent reachable
    eval "$("$bin/credd" agent -s)"
    started="a credd agent is running on $CREDD_SOCK (pid $CREDD_PID), started by make run"
fi
rc=0
"$bin/credtui" || rc=$?
if [ -n "$started" ]; then
    echo "$started"
    if command -v credd >/dev/null; then
        echo "stop it with: credd stop"
    else
        echo "stop it with: $bin/credd stop"
        echo "(credd is not on your PATH: \`make install-user\`, or export PATH=\"$bin:\$PATH\")"
    fi
fi
exit "$rc"
