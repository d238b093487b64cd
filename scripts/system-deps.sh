#!/usr/bin/env bash
# Install the system tools the tests drive for real, when they are missing and
# we may install them (root with apt). Tests that still lack one skip with a reason.
# A git new enough for the credential-helper expiry tests is scripts/modern-git.sh's job.
set -u
need=()
command -v tmux >/dev/null || need+=(tmux)
command -v git >/dev/null || need+=(git)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v setpriv >/dev/null || need+=(util-linux)
command -v fish >/dev/null || need+=(fish)
command -v csh >/dev/null || need+=(csh)
command -v zsh >/dev/null || need+=(zsh)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") \
        >/tmp/credd-system-deps.log 2>&1 || echo "warning: could not install ${need[*]} (see /tmp/credd-system-deps.log)"
else
    echo "note: missing ${need[*]}; tests that need them will skip"
fi
exit 0
