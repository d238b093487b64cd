"""An entry's check: a command that proves the stored credential still works (`credd verify`,
`credd rotate --verify`), run like `credd run`: by the client, with the values in the
child and its output masked.

Why the client runs it, not the agent: a check talks to the service the credential is for,
and the agent is deliberately cut off from networks (the shipped systemd unit has
`PrivateNetwork=yes` and `RestrictAddressFamilies=AF_UNIX`, which its children inherit);
the client runs in the user's own environment (PATH, proxies, CA bundles), as `credd run`
does. The agent keeps each entry's last result (`record_verification`).

The command is the entry's plain field `verify`, a command line split as a POSIX shell
would split it (shlex; no shell runs it), holding `credd://NAME[/FIELD]` references:

- `VAR=credd://NAME` words before the command put that value in the child's environment,
  which only you and root can read (`/proc/PID/environ` is 0400). Prefer this.
- A reference in an argument is replaced in place, running to the end of the argument (or
  written `{{ credd://NAME }}` to end sooner): simplest for `curl -H "Authorization: Bearer
  credd://github/token"`, but a process's arguments are readable by every local user
  (`/proc/PID/cmdline`) while it runs.
- Other `VAR=value` words before the command are plain environment.

The child gets the caller's environment plus those variables, /dev/null as stdin, one pipe
for stdout and stderr, and its own process group, which is killed (SIGTERM, then SIGKILL
after `GRACE` seconds) when it outlives the timeout (default 30 s). What it printed is
masked (every value it was given, and during a rotation the old and the new value, in the
forms `credd run` masks) and its last `KEPT_OUTPUT` bytes are kept. Exit status 0 is ok.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from credd.envfile import is_var_name
from credd.errors import BadRequest
from credd.mask import Masker
from credd.protocol import EntryMeta, VerifyOutcome
from credd.refs import SCHEME, TEMPLATE_RE, is_ref, parse

FIELD = "verify"
DEFAULT_TIMEOUT = 30.0
GRACE = 2.0
KEPT_OUTPUT = 4096


class Check(NamedTuple):
    """A parsed check: the command and environment, references still in them."""

    argv: list[str]
    env: dict[str, str]              # VAR -> a reference, or a plain value
    refs: list[str]                  # every distinct reference, in order

    def argv_refs(self) -> list[str]:
        """The references that end up in the child's arguments (visible in /proc)."""
        return [ref for word in self.argv for ref in _word_refs(word)]


class Result(NamedTuple):
    outcome: VerifyOutcome
    exit_status: int | None          # the child's, when it exited on its own
    output: str                      # masked, its last KEPT_OUTPUT bytes
    seconds: float


def command_of(meta: EntryMeta) -> str | None:
    """The entry's check, or None when it has none."""
    return meta.fields.get(FIELD) or None


def parse_check(text: str) -> Check:
    """The check in `text`; BadRequest saying what is wrong with it."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise BadRequest(f"the check {text[:60]!r} cannot be split into words: {exc}") from None
    env: dict[str, str] = {}
    while words and "=" in words[0] and is_var_name(words[0].partition("=")[0]):
        var, _, value = words.pop(0).partition("=")
        env[var] = value
    if not words:
        raise BadRequest("the check has no command (VAR=credd://NAME assignments need a "
                         "command after them)")
    refs = [value for value in env.values() if is_ref(value)]
    refs += [ref for word in words for ref in _word_refs(word)]
    for ref in refs:
        parse(ref)
    return Check(words, env, list(dict.fromkeys(refs)))


def _word_refs(word: str) -> list[str]:
    braced = [m.group(1) for m in TEMPLATE_RE.finditer(word)]
    if braced:
        return braced
    at = word.find(SCHEME)
    return [] if at < 0 else [word[at:]]


def _substituted(word: str, values: Mapping[str, str]) -> str:
    if TEMPLATE_RE.search(word):
        return TEMPLATE_RE.sub(lambda m: values[m.group(1)], word)
    at = word.find(SCHEME)
    return word if at < 0 else word[:at] + values[word[at:]]


def run_check(check: Check, values: Mapping[str, str], *, timeout: float = DEFAULT_TIMEOUT,
              also_mask: Iterable[str] = ()) -> Result:
    """Run the check with `values` for its references; never raises for the child's sake
    (a missing command is an `error` result)."""
    from credd.redact import redactor
    masker = redactor([*values.values(), *also_mask])
    argv = [_substituted(word, values) for word in check.argv]
    env = {**os.environ, **{var: values.get(value, value) for var, value in check.env.items()}}
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return Result("error", None, f"cannot run {check.argv[0]}: {exc.strerror}",
                      time.monotonic() - started)
    output = _Tail(proc, masker)
    try:
        status: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        status = None
    text = output.collected().decode("utf-8", "replace")
    seconds = time.monotonic() - started
    if status is None:
        return Result("timeout", None, text, seconds)
    exit_status = 128 - status if status < 0 else status
    return Result("ok" if exit_status == 0 else "failed", exit_status, text, seconds)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the check's whole process group, SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Tail:
    """The child's output, masked as it comes (on a thread: the masker sees the whole
    stream, so a value split between reads is still concealed), of which the last
    KEPT_OUTPUT bytes are kept: a check that prints without end costs no memory."""

    def __init__(self, proc: subprocess.Popen[bytes], masker: Masker) -> None:
        assert proc.stdout is not None
        self._pipe, self._masker, self._kept = proc.stdout, masker, b""
        self._thread = threading.Thread(target=self._read, name="credd-check-output",
                                        daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._pipe.fileno(), 65536):  # what is there, not 64 KiB
            self._keep(self._masker.feed(chunk))
        self._keep(self._masker.flush())
        self._pipe.close()

    def _keep(self, masked: bytes) -> None:
        self._kept = (self._kept + masked)[-KEPT_OUTPUT:]

    def collected(self) -> bytes:
        """What was kept, once the pipe is closed (every holder of it ended) or soon after:
        a grandchild that keeps the pipe open is not waited for, and what the masker
        still holds back of it is not shown."""
        self._thread.join(GRACE)
        return self._kept
