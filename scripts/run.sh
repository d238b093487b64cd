#!/usr/bin/env bash
# `make run`: start an agent on the default vault if none answers, then open the TUI.
set -eu
cd "$(dirname "$0")/.."
bin=.venv/bin
if ! "$bin/credd" status >/dev/null 2>&1; then
    rc=0; "$bin/credd" status >/dev/null 2>&1 || rc=$?
    if [ "$rc" = 4 ]; then
        eval "$("$bin/credd" agent -s)" >/dev/null
        echo "started a credd agent (CREDD_SOCK=${CREDD_SOCK:-default})"
    fi
fi
if [ -x "$bin/credtui" ] && "$bin/python" -c 'import credtui.app' 2>/dev/null; then
    exec "$bin/credtui"
fi
exec "$bin/credd" status
