"""`credd mount add | ls | rm`: the mount table in config.toml (docs/mounts.md).

These edit the file directly, so they work with no agent running; a running
agent notices the change at its next request. When one answers, `add` first
says whether local entries would be hidden under the new mount's name, and
`add` and `ls` show each mount's state as the agent sees it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from credd.cli import output
from credd.errors import AgentUnavailable, CreddError
from credd.rules import parse_duration

BACKENDS = ("openbao", "env", "files")
#: option -> (help, metavar); every option is a MountConfig field of the same name.
_OPTIONS = {
    "url": ("openbao: the server, e.g. https://bao.example.com:8200", "URL"),
    "engine": ("openbao: the KV v2 engine's mount point (default: secret)", "PATH"),
    "prefix": ("openbao: the path under the engine, e.g. team/; env: the variables' prefix "
               "(as --env-prefix)", "PREFIX"),
    "token": ("openbao: credd://NAME of a local entry holding the token", "REF"),
    "role_id": ("openbao AppRole: credd://NAME of the role id", "REF"),
    "secret_id": ("openbao AppRole: credd://NAME of the secret id", "REF"),
    "namespace": ("openbao: the namespace", "NS"),
    "ca_cert": ("openbao: a CA bundle for https", "PATH"),
    "dir": ("files: the directory of secret files, e.g. /run/secrets", "DIR"),
    "env_prefix": ("env: the variables' common prefix, e.g. PLATFORM_CRED_", "PREFIX"),
}


def register(sub: Any) -> None:
    p = sub.add_parser("mount", help="serve another store's entries under a name: an OpenBao "
                                     "or Vault KV engine, environment variables, secret files")
    actions = p.add_subparsers(dest="mount_action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="add a mount (NAME/... then comes from it)")
    a.add_argument("name", metavar="NAME", help="the mount's name: the first segment of its "
                                               "entries' names")
    a.add_argument("--backend", required=True, choices=BACKENDS)
    for option, (text, metavar) in _OPTIONS.items():
        a.add_argument(f"--{option.replace('_', '-')}", dest=option, metavar=metavar, help=text)
    duration = output.arg_type(parse_duration)
    a.add_argument("--revalidate", type=duration, metavar="D",
                   help="openbao: serve a cached read this long before checking its version "
                        "(default 30s)")
    a.add_argument("--offline-cache", action="store_true",
                   help="openbao: keep serving cached reads while the server is down")
    a.set_defaults(func=cmd_add)
    a = actions.add_parser("ls", help="list the mounts and their states")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.set_defaults(func=cmd_ls)
    a = actions.add_parser("rm", help="remove a mount (its entries stay where they are)")
    a.add_argument("name", metavar="NAME")
    a.set_defaults(func=cmd_rm)


def cmd_add(ns: Any) -> int:
    from credd import paths
    from credd.daemon.mounts.config import MountConfig, add, check, load
    options = {o: getattr(ns, o) for o in (*_OPTIONS, "revalidate") if getattr(ns, o)}
    if ns.backend == "env" and "prefix" in options:
        options.setdefault("env_prefix", options.pop("prefix"))
    if "dir" in options:
        options["dir"] = os.path.abspath(options["dir"])
    if ns.offline_cache:
        options["offline_cache"] = True
    config = check(MountConfig(name=ns.name, backend=ns.backend, **options))
    if ns.name not in load(paths.config_path()):
        _warn_hidden(ns.name)
    add(paths.config_path(), config)
    print(f"mount {ns.name} added ({ns.backend}); {ns.name}/... now comes from it")
    _show_state(ns.name)
    return 0


def cmd_rm(ns: Any) -> int:
    from credd import paths
    from credd.daemon.mounts.config import remove
    removed = remove(paths.config_path(), ns.name)
    print(f"mount {removed.name} removed ({removed.backend}); its entries were not touched")
    return 0


def cmd_ls(ns: Any) -> int:
    from credd import paths
    from credd.daemon.mounts.config import load
    from credd.daemon.mounts.table import location
    path = paths.config_path()
    table = load(path)
    status = _agent_status()
    states = {m.name: m for m in status.mounts} if status else {}
    if ns.json:
        output.print_json([_as_json(config, states.get(name)) for name, config in table.items()])
        return 0
    if not table:
        print(f"no mounts (add one with `credd mount add`; table: {path})")
    else:
        rows = [[name, config.backend, location(config),
                 states[name].state if name in states else "-"]
                for name, config in table.items()]
        print(output.table(rows, ["NAME", "BACKEND", "LOCATION", "STATE"]))
        for name, info in states.items():
            for line in ([info.message] if info.message else []) + list(info.warnings):
                print(f"  {name}: {line}")
    if status is None:
        print("(no agent answers: states are shown while one runs)", file=sys.stderr)
    elif status.config_error:
        print(f"the agent keeps its last good table: {status.config_error}", file=sys.stderr)
    return 0


def _as_json(config: Any, info: Any) -> dict[str, Any]:
    from credd.daemon.mounts.config import OPTIONS
    from credd.daemon.mounts.table import location
    data = {"name": config.name, "backend": config.backend,
            **{option: getattr(config, option) for option in OPTIONS[config.backend]},
            "location": location(config)}
    data.update(state=info.state if info else None, message=info.message if info else "",
                warnings=list(info.warnings) if info else [])
    return data


def _agent_status() -> Any:
    """The agent's status, or None when none answers."""
    try:
        with output.client(timeout=5.0) as c:
            return c.status()
    except AgentUnavailable:
        return None


def _warn_hidden(name: str) -> None:
    """Say so when local entries are about to be hidden by a mount of that name."""
    try:
        with output.client(timeout=5.0) as c:
            hidden = [m.name for m in c.list(prefix=name) if m.name == name
                      or m.name.startswith(name + "/")]
    except CreddError:
        return  # no agent, or locked: the agent's status will say it later
    if hidden:
        print(f"warning: {len(hidden)} local entr{'y' if len(hidden) == 1 else 'ies'} under "
              f"{name}/ will be hidden while this mount is in the table (e.g. {hidden[0]}); "
              "they are not deleted", file=sys.stderr)


def _show_state(name: str) -> None:
    status = _agent_status()
    info = next((m for m in status.mounts if m.name == name), None) if status else None
    if info is not None and info.state not in ("ok", "locked"):
        print(f"the agent cannot use it yet: {info.state}: {info.message}", file=sys.stderr)
    for warning in info.warnings if info else []:
        print(f"warning: {warning}", file=sys.stderr)
