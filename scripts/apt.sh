# Sourced by system-deps.sh and modern-git.sh: how credd's setup scripts use apt,
# and what "under CI" means for them.
#
# - Under CI (CREDD_CI=1, which .ci/run exports) a tool that cannot be had fails
#   the run; elsewhere the scripts say what is missing and the tests that need it
#   skip (tests/tools.py turns those skips into failures under CREDD_CI=1 too).
# - apt waits for another apt's lock (two minutes) instead of failing at once.
# - Every network step has a connect timeout; a failure shows the end of its log.
# - Each run logs to its own file under .tools/logs/, never to a shared path in /tmp.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
LOCK_WAIT=120
APT_OPTS=(-o "DPkg::Lock::Timeout=$LOCK_WAIT" -o Acquire::http::Timeout=20
          -o Acquire::https::Timeout=20 -o Acquire::Retries=2)

in_ci() { [ "${CREDD_CI:-}" = 1 ]; }

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

# new_log NAME: a fresh log file for this run of NAME, printed
new_log() {
    mkdir -p "$ROOT/.tools/logs"
    mktemp "$ROOT/.tools/logs/$1.$(date +%Y%m%d-%H%M%S).XXXXXX.log"
}

# show_log LOG: its last lines on stderr
show_log() {
    echo "---- last lines of $1 ----" >&2
    tail -n 20 "$1" >&2
}

# die PROGRAM MESSAGE: MESSAGE on stderr, exit 1
die() {
    echo "$1: error: $2" >&2
    exit 1
}

# missing PROGRAM WHAT: under CI a failure; elsewhere a note (tests that need it skip)
missing() {
    in_ci && die "$1" "$2 (CREDD_CI=1: a missing tool fails the run)"
    echo "$1: note: $2; the tests that need it will skip" >&2
    exit 0
}

# apt_get LOG ARGS...: apt-get, non-interactive, waiting for the dpkg lock, into LOG
apt_get() {
    local log=$1
    shift
    DEBIAN_FRONTEND=noninteractive apt-get -q -y "${APT_OPTS[@]}" "$@" >>"$log" 2>&1
}

# apt_update LOG [ARGS...]: `apt-get update`, retried while another apt holds the lists
# lock (apt's DPkg::Lock::Timeout covers dpkg's lock only, not update's)
apt_update() {
    local log=$1 deadline=$((SECONDS + LOCK_WAIT)) try
    shift
    try=$(mktemp)
    until apt_get "$try" "$@" update; do
        if ! grep -q "Could not get lock" "$try" || ((SECONDS >= deadline)); then
            cat "$try" >>"$log"
            rm -f "$try"
            return 1
        fi
        : >"$try"
        sleep 2
    done
    cat "$try" >>"$log"
    rm -f "$try"
}

# apt_install PROGRAM LOG PACKAGE...: update the lists and install; on failure show
# the end of LOG and return 1
apt_install() {
    local program=$1 log=$2
    shift 2
    echo "$program: installing $* (log: $log)"
    if apt_update "$log" && apt_get "$log" install "$@"; then
        return 0
    fi
    show_log "$log"
    return 1
}
