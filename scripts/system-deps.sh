#!/usr/bin/env bash
# Install the system tools the tests drive for real, when they are missing and we
# may install them (root with apt). Locally, tests that still lack one skip with a
# reason; under CI (CREDD_CI=1) a tool that cannot be installed fails the run.
# A git new enough for the credential-helper expiry tests is scripts/modern-git.sh's job.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

PROGRAM=system-deps
need=()
command -v tmux >/dev/null || need+=(tmux)
command -v git >/dev/null || need+=(git)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v setpriv >/dev/null || need+=(util-linux)
command -v prlimit >/dev/null || need+=(util-linux)
command -v fish >/dev/null || need+=(fish)
command -v csh >/dev/null || need+=(csh)
command -v zsh >/dev/null || need+=(zsh)
# a private X server and the X11 clipboard tools, for credtui's clipboard tests
command -v Xvfb >/dev/null || need+=(xvfb)
command -v xclip >/dev/null || need+=(xclip)
command -v xsel >/dev/null || need+=(xsel)
[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

can_apt || missing "$PROGRAM" "missing ${need[*]} (installing them needs root and apt-get)"
log=$(new_log "$PROGRAM")
apt_install "$PROGRAM" "$log" "${need[@]}" || missing "$PROGRAM" "could not install ${need[*]} (log: $log)"
