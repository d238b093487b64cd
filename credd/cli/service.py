"""`credd service install | uninstall | status` and `credd agent`: keeping an agent around.

`service install` writes the shipped systemd user units (`systemd/`) or the
LaunchAgent plist (`launchd/`) with the absolute path of the credd that runs
it, and prints the one command that enables them; it never calls systemctl or
launchctl itself, so it works the same in a container, over SSH or in a test.
`credd agent` is the ssh-agent style alternative: a detached agent and the
shell lines that point CREDD_SOCK at it.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections import namedtuple

from credd import paths
from credd.errors import BadRequest, InternalError

SERVICE_FILES = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))),
                             "service_files")
LAUNCHD_LABEL = "dev.credd.agent"
#: Where `systemctl --user enable` links credd.socket (uninstall removes the link too).
SYSTEMD_WANTS = ("sockets.target.wants/credd.socket",)


# A namedtuple, not a dataclass: `dataclasses` pulls in `inspect` (~15 ms), and
# every argparse command imports this module to register its parser.
Plan = namedtuple("Plan", "kind files socket enable disable links dirs", defaults=((), ()))
Plan.__doc__ = "What installing one flavour means: files with their text, the socket, the commands."


def register(sub) -> None:
    p = sub.add_parser("service", help="install credd as a systemd or launchd user service")
    actions = p.add_subparsers(dest="service_action", metavar="ACTION", required=True)
    for name, func, text in (
        ("install", cmd_install, "write the units (or plist) for this credd and print how "
                                 "to enable them"),
        ("uninstall", cmd_uninstall, "remove what `install` wrote"),
        ("status", cmd_status, "show whether the service files are installed and current "
                               "(exit 1 if not) and whether an agent answers"),
    ):
        a = actions.add_parser(name, help=text)
        kind = a.add_mutually_exclusive_group()
        kind.add_argument("--systemd", dest="kind", action="store_const", const="systemd",
                          help="systemd user units (the default on Linux)")
        kind.add_argument("--launchd", dest="kind", action="store_const", const="launchd",
                          help="a launchd LaunchAgent (the default on macOS)")
        if name != "status":
            a.add_argument("--dry-run", action="store_true",
                           help="print what would change, change nothing")
        a.set_defaults(func=func)

    p = sub.add_parser("agent", help="start a detached agent (or reuse the running one) and "
                                     "print shell lines setting CREDD_SOCK and CREDD_PID",
                       description='Use as: eval "$(credd agent)". Like ssh-agent, the shell '
                                   "syntax follows $SHELL unless -s, -c or --fish is given.")
    shell = p.add_mutually_exclusive_group()
    shell.add_argument("-s", dest="shell", action="store_const", const="sh",
                       help="Bourne shell syntax (sh, bash, zsh)")
    shell.add_argument("-c", dest="shell", action="store_const", const="csh",
                       help="C shell syntax (csh, tcsh)")
    shell.add_argument("--fish", dest="shell", action="store_const", const="fish",
                       help="fish syntax")
    p.add_argument("-k", dest="kill", action="store_true",
                   help="stop the agent named by CREDD_PID/CREDD_SOCK and print unset lines")
    p.set_defaults(func=cmd_agent)


# ---------------------------------------------------------------- service files

def credd_command() -> list[str]:
    """How a service manager should start this credd: its script, else this Python with -m."""
    argv0 = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0) == "credd" and os.access(argv0, os.X_OK):
        return [argv0]
    script = os.path.join(os.path.dirname(sys.executable), "credd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "credd"]


def shipped(name: str) -> str:
    """The text of a unit or plist shipped with credd."""
    with open(os.path.join(SERVICE_FILES, name), encoding="utf-8") as f:
        return f.read()


def default_kind() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def plan(kind: str | None = None, command: list[str] | None = None) -> Plan:
    """Everything `install` would write for `kind`, and the commands around it."""
    kind = kind or default_kind()
    command = command or credd_command()
    return _systemd_plan(command) if kind == "systemd" else _launchd_plan(command)


def _systemd_plan(command: list[str]) -> Plan:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    unit_dir = os.path.join(config, "systemd", "user")
    service, count = re.subn(r"(?m)^ExecStart=.*$",
                             lambda _: exec_start([*command, "serve"]),
                             shipped("credd.service"))
    if count != 1:
        raise InternalError("the shipped credd.service must have exactly one ExecStart= line")
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Plan(
        kind="systemd",
        files={os.path.join(unit_dir, "credd.socket"): shipped("credd.socket"),
               os.path.join(unit_dir, "credd.service"): service},
        socket=os.path.join(runtime, "credd", "agent.sock"),
        enable="systemctl --user enable --now credd.socket",
        disable="systemctl --user disable --now credd.socket credd.service",
        links=[os.path.join(unit_dir, link) for link in SYSTEMD_WANTS],
    )


def _launchd_plan(command: list[str]) -> Plan:
    import plistlib

    # launchd passes no XDG variables, so the agent uses platformdirs' macOS defaults.
    log_dir = os.path.expanduser("~/Library/Logs/credd")
    plist = plistlib.loads(shipped(f"{LAUNCHD_LABEL}.plist").encode())
    plist["ProgramArguments"] = [*command, "serve"]
    plist["StandardOutPath"] = plist["StandardErrorPath"] = os.path.join(log_dir, "agent.log")
    target = os.path.expanduser(f"~/Library/LaunchAgents/{LAUNCHD_LABEL}.plist")
    return Plan(
        kind="launchd",
        files={target: plistlib.dumps(plist).decode()},
        socket=os.path.expanduser("~/Library/Caches/TemporaryItems/credd/agent.sock"),
        enable=f"launchctl bootstrap gui/{os.getuid()} {shlex.quote(target)}",
        disable=f"launchctl bootout gui/{os.getuid()}/{LAUNCHD_LABEL}",
        dirs=[log_dir],
    )


def exec_start(argv: list[str]) -> str:
    return "ExecStart=" + " ".join([systemd_word(argv[0], program=True),
                                    *map(systemd_word, argv[1:])])


def systemd_word(arg: str, *, program: bool = False) -> str:
    """One ExecStart= word: specifiers (and, in arguments, variables) escaped, quoted if needed."""
    arg = arg.replace("%", "%%")
    if not program:  # systemd expands $VAR in arguments only
        arg = arg.replace("$", "$$")
    if re.fullmatch(r"[\w@%+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path: str, text: str) -> None:
    """Replace `path` atomically, so a service manager never reads half a unit."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _socket_hint(p: Plan) -> None:
    if p.socket != paths.socket_path():
        print(f"this shell uses {paths.socket_path()}; point your shells at the service's "
              f"socket:\n  export CREDD_SOCK={shlex.quote(p.socket)}")


def cmd_install(ns) -> int:
    p = plan(ns.kind)
    changed = {path: text for path, text in p.files.items() if _read(path) != text}
    for path, text in p.files.items():
        if ns.dry_run:
            print(f"# {path} ({'would write' if path in changed else 'unchanged'})\n{text}")
        elif path in changed:
            _write(path, text)
            print(f"wrote {path}")
        else:
            print(f"unchanged {path}")
    if not ns.dry_run:
        for d in p.dirs:
            paths.ensure_private_dir(d)
    print(f"enable it with:\n  {p.enable}")
    if changed and any(os.path.lexists(link) for link in p.links):
        print("it was already enabled: restart a running agent with\n"
              "  systemctl --user daemon-reload && systemctl --user restart credd.service")
    _socket_hint(p)
    return 0


def cmd_uninstall(ns) -> int:
    p = plan(ns.kind)
    doomed = [path for path in [*p.links, *p.files] if os.path.lexists(path)]
    for path in doomed:
        if not ns.dry_run:
            os.unlink(path)
        print(f"{'would remove' if ns.dry_run else 'removed'} {path}")
    if not doomed:
        print(f"no {p.kind} service files of credd are installed")
    print(f"stop a running service with:\n  {p.disable}")
    return 0


def cmd_status(ns) -> int:
    from credd import spawn
    from credd.errors import CreddError

    p = plan(ns.kind)
    current = True
    print(f"credd {p.kind} service")
    for path, text in p.files.items():
        found = _read(path)
        current &= found == text
        state = ("missing" if found is None else "installed" if found == text
                 else "outdated (run `credd service install`)")
        print(f"  {path}: {state}")
    if p.links:
        enabled = any(os.path.lexists(link) for link in p.links)
        print(f"  enabled: {'yes' if enabled else 'no (' + p.enable + ')'}")
    try:
        info = spawn.running_agent(p.socket)
        agent = f"agent pid {info.pid} answers" if info else "no agent answers"
    except CreddError as exc:
        agent = exc.message
    print(f"  socket {p.socket}: {agent}")
    _socket_hint(p)
    return 0 if current else 1


# ---------------------------------------------------------------- credd agent

#: (set line, unset line) per shell; {name} and {value} are filled in.
SHELL_SYNTAX = {
    "sh": ("{name}={value}; export {name};", "unset {name};"),
    "csh": ("setenv {name} {value};", "unsetenv {name};"),
    "fish": ("set -gx {name} {value};", "set -e {name};"),
}


def shell_quote(shell: str, value: str) -> str:
    """`value` as one word of `shell` (control characters are refused, not escaped)."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise BadRequest(f"refusing to print a value with control characters: {value!r}")
    if shell == "fish":
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    quoted = shlex.quote(value)
    return quoted.replace("!", "\\!") if shell == "csh" else quoted  # csh expands ! in quotes


def shell_from_env() -> str:
    """The syntax for the user's shell, guessed from $SHELL as ssh-agent does."""
    name = os.path.basename(os.environ.get("SHELL", ""))
    return "fish" if name == "fish" else "csh" if name.endswith("csh") else "sh"


def env_lines(shell: str, values: dict[str, str | None]) -> str:
    """Lines that set (or, for None, unset) each variable in `shell`."""
    set_line, unset_line = SHELL_SYNTAX[shell]
    return "\n".join(
        unset_line.format(name=name) if value is None
        else set_line.format(name=name, value=shell_quote(shell, value))
        for name, value in values.items()
    ) + "\n"


def cmd_agent(ns) -> int:
    from credd import spawn

    shell = ns.shell or shell_from_env()
    if ns.kill:
        pid = os.environ.get("CREDD_PID", "")
        if not pid.isdigit():
            raise BadRequest("CREDD_PID is not set, so no agent is named to stop "
                             "(`credd stop` stops the agent on the socket)")
        spawn.stop_agent(paths.socket_path(), int(pid))
        sys.stdout.write(env_lines(shell, {"CREDD_SOCK": None, "CREDD_PID": None}))
        return 0
    info = spawn.ensure_agent()
    sys.stdout.write(env_lines(shell, {"CREDD_SOCK": info.socket, "CREDD_PID": str(info.pid)}))
    return 0
