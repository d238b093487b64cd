"""`credd run | inject | export | import | redact | aws-credential-process`: secrets into programs.

Every command resolves all the references it needs in one `get_many` round
trip before doing anything, so a missing one fails the whole command and
nothing half-happens. Secret values never come from arguments: `--env`
takes references only, plain values belong in an env file.
"""

from __future__ import annotations

import os
import sys

from credd.cli.output import client
from credd.errors import BadRequest, Denied, Exists, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from credd.client import Client
    from credd.formats import Draft, Item, Skipped
    from credd.protocol import EntryMeta
    from credd.runner import SecretFiles

ISOLATED_KEEP = ("PATH", "HOME", "TERM", "LANG")
EXPORT_FORMATS = ("dotenv", "shell", "json", "k8s-secret", "docker-secrets")
IMPORT_FORMATS = ("dotenv", "env", "aws", "json")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    import argparse
    p = sub.add_parser("run", help="run a command with secrets in its environment, its output "
                                   "masked")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="KEY=VALUE lines; values may be credd:// references (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="VAR=REF",
                   help="set VAR to the secret credd://NAME[/FIELD] (repeatable)")
    p.add_argument("--only", action="store_true",
                   help="pass only the declared variables plus " + "/".join(ISOLATED_KEEP))
    p.add_argument("--no-mask", dest="mask", action="store_false",
                   help="do not conceal secret values in the command's output")
    p.add_argument("--files", action="store_true",
                   help="put each secret in a memory-backed, read-only file and set VAR_FILE "
                        "(its path) instead of VAR")
    p.add_argument("--via-agent", action="store_true",
                   help="the agent starts the command, so no value ever enters this process "
                        "(always so under a `use` grant)")
    p.add_argument("--dry-run", action="store_true",
                   help="run nothing: print the command and each variable it would get with "
                        "the reference it comes from (never a value)")
    p.add_argument("--json", action="store_true", help="with --dry-run: print it as JSON")
    p.add_argument("--restart-on-change", action="store_true",
                   help="stay beside the command: when a value it gets changes in the vault, "
                        "signal it and start it again with the new values; restart it (backing "
                        "off) when it fails")
    p.add_argument("--signal", metavar="SIG",
                   help="with --restart-on-change: the signal that asks the command to stop "
                        "(default TERM), or with --files one that makes it re-read its files "
                        "(HUP, USR1, USR2)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS]")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inject", help="render {{ credd://NAME/FIELD }} in a template")
    p.add_argument("-i", "--in", dest="template", metavar="TEMPLATE", help="default: stdin")
    p.add_argument("-o", "--out", metavar="OUT", help="written 0600, atomically; default: stdout")
    p.add_argument("--force", action="store_true", help="overwrite OUT even if others can read it")
    p.set_defaults(func=cmd_inject)

    p = sub.add_parser("export", help="write secrets as dotenv, shell, JSON, a Kubernetes Secret "
                                      "or Docker secret files")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--service", metavar="S", help="every entry of this service")
    p.add_argument("--tag", metavar="T", help="every entry with this tag")
    p.add_argument("--from", dest="folder", metavar="FOLDER",
                   help="every entry under FOLDER/, in the order they were created, each "
                        "variable named after the rest of its name (kept as it is when it is "
                        "a variable name already): undoes `credd import --into FOLDER`")
    p.add_argument("-o", "--out", metavar="OUT",
                   help="file (0600), `-` for stdout, or the directory for docker-secrets; "
                        "without it stdout, but never a terminal unless `-o -`")
    p.add_argument("--map", action="append", default=[], metavar="NAME=VAR",
                   help="variable name for NAME or NAME/FIELD (repeatable)")
    p.add_argument("--secret-name", default="credd-secrets", help="k8s-secret: metadata.name")
    p.add_argument("--force", action="store_true",
                   help="overwrite OUT even if others can read it; print to a terminal")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="import secrets (dry run unless --apply)")
    p.add_argument("--format", required=True, choices=IMPORT_FORMATS)
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="the file (`-` for stdin); aws: default ~/.aws/credentials; env: none")
    p.add_argument("--prefix", default="", help="env: import variables starting with this")
    p.add_argument("--into", default=None, metavar="FOLDER",
                   help="put entries under FOLDER/ (aws: default `aws`); "
                        "`credd export --from FOLDER` gives a dotenv file back")
    p.add_argument("--apply", action="store_true", help="write (default: show what would change)")
    p.add_argument("--overwrite", action="store_true", help="replace entries that exist")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("redact", help="copy stdin or FILE to stdout with every stored secret "
                                      "concealed")
    p.add_argument("file", nargs="?", metavar="FILE")
    p.add_argument("--deep", action="store_true",
                   help="also base64 of a secret inside longer encoded text (Basic auth); "
                        "slower to start with many secrets")
    p.set_defaults(func=cmd_redact)

    p = sub.add_parser("aws-credential-process",
                       help="print AWS credential_process JSON from a multi-field entry")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_aws_credential_process)


# ---------------------------------------------------------------- run

def _declared(ns: argparse.Namespace) -> tuple[dict[str, str], dict[str, str]]:
    """(VAR → reference, VAR → plain value) from the env files, then --env."""
    from credd.envfile import is_var_name, parse_dotenv
    from credd.refs import is_ref, parse
    refs: dict[str, str] = {}
    plain: dict[str, str] = {}
    for path in ns.env_file:
        for var, value in parse_dotenv(_read_text(path), source=path):
            refs.pop(var, None)
            plain.pop(var, None)
            (refs if is_ref(value) else plain)[var] = value
    for pair in ns.env:
        var, eq, ref = pair.partition("=")
        if not is_var_name(var):
            raise BadRequest(f"--env: {var[:40]!r} is not a variable name "
                             f"(letters, digits, _ . -; not starting with a digit)")
        if not eq or not is_ref(ref):
            raise BadRequest(f"--env wants VAR=credd://NAME[/FIELD] (plain values go in an "
                             f"--env-file, never on the command line); got {var or pair!r}=…")
        parse(ref)
        plain.pop(var, None)
        refs[var] = ref
    return refs, plain


def cmd_run(ns: argparse.Namespace) -> int:
    from credd import runner
    argv = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not argv:
        raise BadRequest("no command given: credd run [OPTIONS] -- CMD [ARGS]")
    refs, plain = _declared(ns)
    if ns.dry_run:
        return _dry_run(ns, argv, refs, plain)
    if ns.json:
        raise BadRequest("--json goes with --dry-run (the command's own output is its own)")
    if ns.signal and not ns.restart_on_change:
        raise BadRequest("--signal goes with --restart-on-change")
    base = _base_environment(ns, plain)
    if ns.restart_on_change:
        from credd import restarter
        return restarter.supervise(restarter.Plan(
            argv, refs, lambda: _fetch(refs), lambda secrets: _environment(ns, base, secrets),
            mask=ns.mask, files=ns.files, sig=restarter.parse_signal(ns.signal, ns.files)))
    secrets = _fetch_or_hand_over(ns, argv, base, refs) if refs else {}
    if isinstance(secrets, int):  # the agent ran it: this is its exit status
        return secrets
    env, files = _environment(ns, base, secrets)
    return runner.run(argv, env, list(secrets.values()), mask=ns.mask, files=files)


def _fetch(refs: dict[str, str]) -> dict[str, str]:
    """VAR → value, every reference in one round trip."""
    from credd.cli.fast import get_many
    from credd.refs import resolve_all
    values = resolve_all(refs.values(), get_many) if refs else {}
    return {var: values[ref] for var, ref in refs.items()}


def _base_environment(ns: argparse.Namespace, plain: dict[str, str]) -> dict[str, str]:
    """The child's environment before its secrets: ours (or --only's few) and the plain values."""
    base = ({k: os.environ[k] for k in ISOLATED_KEEP if k in os.environ} if ns.only
            else dict(os.environ))
    return {**base, **plain}


def _environment(ns: argparse.Namespace, base: dict[str, str], secrets: dict[str, str]
                 ) -> tuple[dict[str, str], SecretFiles | None]:
    """The child's environment (`base` and the secrets), and with --files the files its
    VAR_FILE variables name."""
    from credd import runner
    env = dict(base)
    files = None
    if ns.files:
        files = runner.secret_files(secrets)
        env.update(files.env)
        for var in secrets:
            env.pop(var, None)
    else:
        env.update(secrets)
    return env, files


def _fetch_or_hand_over(ns: argparse.Namespace, argv: list[str], env: dict[str, str],
                        refs: dict[str, str]) -> dict[str, str] | int:
    """VAR -> value, fetched in one round trip; or, when this process may not receive
    values (a `use` grant), the exit status of the command the agent ran instead."""
    from credd.cli import fast
    from credd.refs import parse, resolve_all
    from credd.wire import connect
    for ref in refs.values():
        parse(ref)
    sock = connect()
    try:
        frames, welcome = fast.greeted(sock)
        if ns.via_agent or welcome.get("mode") == "use":
            if not ns.mask or ns.files:
                raise Denied("the agent runs the command (under a `use` grant it must) "
                             "always masked and with its secrets in the environment: "
                             f"drop {'--no-mask' if not ns.mask else '--files'}")
            from credd.cli import agent_run
            return agent_run.run(sock, frames, argv, env, refs)
        values = resolve_all(refs.values(), lambda wanted: fast.values_on(sock, frames, wanted))
    finally:
        sock.close()
    return {var: values[ref] for var, ref in refs.items()}


def _dry_run(ns: argparse.Namespace, argv: list[str], refs: dict[str, str],
             plain: dict[str, str]) -> int:
    """What `run` would do, without a value: each variable and the reference it comes from
    (a plain value from an env file is named, not shown: it may be a secret too)."""
    import shlex

    from credd.cli import output
    variables = [{"name": f"{var}_FILE" if ns.files and var in refs else var,
                  "ref": refs.get(var)} for var in sorted({*refs, *plain})]
    if ns.json:
        output.print_json({"command": argv, "variables": variables, "only": ns.only,
                           "mask": ns.mask, "files": ns.files})
        return 0
    print(f"would run: {shlex.join(argv)}")
    rows = [[str(v["name"]), v["ref"] or "(a plain value from an env file)"] for v in variables]
    if rows:
        print(output.table(rows, ["VARIABLE", "FROM"]))
    return 0


# ---------------------------------------------------------------- inject

def cmd_inject(ns: argparse.Namespace) -> int:
    from credd.cli import fast
    from credd.files import check_overwrite, fill_private, write_private
    from credd.refs import find_template_refs, render, resolve_all
    from credd.wire import connect
    if ns.out:
        check_overwrite(ns.out, ns.force)  # fail before anything is fetched
    template = _read_text(ns.template or "-")
    wanted = find_template_refs(template)
    values: dict[str, str] = {}
    if wanted:
        sock = connect()
        try:
            frames, welcome = fast.greeted(sock)
            if welcome.get("mode") == "use":  # the agent writes the file: see agent_run
                if not ns.out:
                    raise Denied("under a `use` grant inject writes only into a file "
                             "(-o FILE), never to stdout")
                from credd.cli import agent_run
                fill_private(ns.out, lambda fd: agent_run.inject(sock, frames, template, fd),
                             force=ns.force)
                return 0
            values = resolve_all(wanted, lambda refs: fast.values_on(sock, frames, refs))
        finally:
            sock.close()
    rendered = render(template, values).encode()
    if ns.out:
        write_private(ns.out, rendered, force=ns.force)
    else:
        sys.stdout.buffer.write(rendered)
    return 0


# ---------------------------------------------------------------- export

def _selected(c: Client, ns: argparse.Namespace) -> list[EntryMeta]:
    chosen = sum(bool(x) for x in (ns.names, ns.service, ns.tag, ns.folder))
    if chosen != 1:
        raise BadRequest("say what to export: NAMES, or --service S, --tag T or --from FOLDER "
                         "(one of them)")
    if ns.names:
        found, missing = [], []
        for name in dict.fromkeys(ns.names):
            try:
                found.append(c.describe(name))
            except NotFound:
                missing.append(name)
        if missing:
            raise NotFound(f"not found (nothing was exported): {', '.join(missing)}",
                           names=missing)
        return found
    if ns.folder:
        folder = ns.folder.strip("/")
        metas = sorted(c.list(prefix=folder + "/"), key=lambda m: m.created)  # import order
        what = f"under {folder + '/'!r}"
    else:
        metas = c.list(service=ns.service) if ns.service else c.list(tag=ns.tag)
        what = f"with {'service' if ns.service else 'tag'} {ns.service or ns.tag!r}"
    if not metas:
        raise NotFound(f"no entries {what}")
    return metas


def _fetch_items(c: Client, metas: Sequence[EntryMeta], mapping: dict[str, str],
                 folder: str) -> list[Item]:
    """Every value and field of the entries, the secret ones in one get_many; a field that an
    entry of the name NAME/FIELD shadows (credd.refs) is asked for on its own."""
    from credd.formats import Item, plan_items
    from credd.refs import SCHEME, field_shadowed, resolve_all
    planned = plan_items(metas, mapping, folder)
    plain = {f"{m.name}/{k}": v for m in metas for k, v in m.fields.items()}
    names = {m.name for m in c.list()} if any(m.secret_fields for m in metas) else set()
    alone = [p for p in planned if p.field is not None and p.ref not in plain
             and field_shadowed(p.name, p.field, names)]
    wanted = [SCHEME + p.ref for p in planned if p.ref not in plain and p not in alone]
    values = {ref.removeprefix(SCHEME): v for ref, v in resolve_all(wanted, c.get_many).items()}
    values.update(plain)
    values.update({p.ref: c.get(p.name, p.field) for p in alone})
    return [Item(p.ref, p.var, values[p.ref]) for p in planned]


def cmd_export(ns: argparse.Namespace) -> int:
    from credd import formats
    from credd.files import check_overwrite, write_private
    mapping = formats.parse_map(ns.map)
    to_file = ns.out is not None and ns.out != "-"
    if ns.format == "docker-secrets":
        if not to_file:
            raise BadRequest("docker-secrets writes files: give the directory with -o DIR")
    elif to_file:
        check_overwrite(ns.out, ns.force)
    elif ns.out is None and sys.stdout.isatty() and not ns.force:
        raise BadRequest(f"the {ns.format} output holds secrets and stdout is a terminal: write "
                         f"it to a file (-o FILE, made 0600) or a pipe, or print it with -o -")
    with client() as c:
        metas = _selected(c, ns)
        if ns.format == "json":
            data = formats.export_json([c.reveal(m.name) for m in metas])
        else:
            items = _fetch_items(c, metas, mapping, ns.folder or "")
            if ns.format == "docker-secrets":
                _docker_secrets(ns.out, items, mapping, ns.force)
                return 0
            data = formats.render_flat(ns.format, items, secret_name=ns.secret_name)
    if to_file:
        write_private(ns.out, data, force=ns.force)
    else:
        sys.stdout.buffer.write(data)
    return 0


def _docker_secrets(directory: str, items: list[Item], mapping: dict[str, str],
                    force: bool) -> None:
    """One 0400 file per secret, named like the variable, lower-cased unless --map named it."""
    from credd.files import write_private
    from credd.paths import ensure_private_dir
    ensure_private_dir(directory)
    for item in items:
        filename = item.var if item.ref in mapping else item.var.lower()
        write_private(os.path.join(directory, filename), item.value.encode(), mode=0o400,
                      force=force)


# ---------------------------------------------------------------- import

def _drafts(ns: argparse.Namespace) -> tuple[list[Draft], list[Skipped]]:
    """The entries to import and what is left out (formats.Skipped), from the input."""
    from credd import formats
    if ns.format == "env":
        return formats.import_env(dict(os.environ), ns.prefix, ns.into or ""), []
    if ns.format == "aws":
        path = ns.file or os.path.expanduser("~/.aws/credentials")
        return formats.import_aws(_read_text(path), "aws" if ns.into is None else ns.into), []
    if not ns.file:
        raise BadRequest(f"--format {ns.format} needs FILE (`-` for stdin)")
    text = _read_text(ns.file)
    if ns.format == "dotenv":
        return formats.import_dotenv(text, ns.into or "")
    return formats.import_json(text, ns.into or ""), []


def cmd_import(ns: argparse.Namespace) -> int:
    from credd.cli.output import progress
    drafts, skipped = _drafts(ns)
    for item in skipped:
        print(f"{'skip':8} {item.what}: {item.why}")
    if not drafts:
        sys.stderr.write("nothing to import\n")
        return 0
    with client() as c:
        existing = {m.name for m in c.list()}
        conflicts = [d.name for d in drafts if d.name in existing]
        for d in drafts:
            verb = ("replace" if ns.overwrite else "conflict") if d.name in existing else "create"
            print(f"{verb:8} {d.name}")
        if not ns.apply:
            sys.stderr.write(f"dry run: {len(drafts)} entries, {len(conflicts)} existing, "
                             f"{len(skipped)} skipped; nothing written (add --apply)\n")
            return 0
        if conflicts and not ns.overwrite:
            raise Exists(f"{len(conflicts)} entries exist already (nothing was written): "
                         f"{', '.join(conflicts)}; add --overwrite to replace them",
                         names=conflicts)
        with progress(len(drafts), "importing") as bar:
            for n, d in enumerate(drafts, 1):
                c.set(d.name, mode="upsert" if ns.overwrite else "create", **d.fields)
                bar(n)
    sys.stderr.write(f"imported {len(drafts)} entries" +
                     (f", skipped {len(skipped)}\n" if skipped else "\n"))
    return 0


# ---------------------------------------------------------------- redact and AWS

def cmd_redact(ns: argparse.Namespace) -> int:
    from credd.redact import redact_stream, redactor, stored_values
    with client() as c:
        values = stored_values(c)
    # compiled on threads while the input is opened; the first chunk waits for it
    masker = redactor(values, deep=ns.deep, background=True)
    if ns.file and ns.file != "-":
        with open(ns.file, "rb") as src:
            redact_stream(src, sys.stdout.buffer, masker)
    else:
        redact_stream(sys.stdin.buffer, sys.stdout.buffer, masker)
    return 0


AWS_FIELDS = {
    "AccessKeyId": ("aws_access_key_id", "access_key_id", "AccessKeyId"),
    "SecretAccessKey": ("aws_secret_access_key", "secret_access_key", "SecretAccessKey"),
    "SessionToken": ("aws_session_token", "session_token", "SessionToken"),
}


def cmd_aws_credential_process(ns: argparse.Namespace) -> int:
    import json

    from credd.cli.output import rfc3339
    with client(timeout=10.0) as c:
        meta = c.describe(ns.name)
        have = set(meta.fields) | set(meta.secret_fields)
        chosen = {key: next((f for f in names if f in have), None)
                  for key, names in AWS_FIELDS.items()}
        missing = [names[0] for key, names in AWS_FIELDS.items()
                   if chosen[key] is None and key != "SessionToken"]
        if missing:
            raise NotFound(f"entry {ns.name!r} has no field {' or '.join(missing)}")
        refs = {key: f"{ns.name}/{f}" for key, f in chosen.items() if f}
        values = c.get_many(list(refs.values()))
    out = {"Version": 1, **{key: values[ref] for key, ref in refs.items()}}
    if meta.expires:
        out["Expiration"] = rfc3339(meta.expires)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


# ---------------------------------------------------------------- helpers

def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.buffer.read().decode("utf-8")
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise BadRequest(f"{path} is not UTF-8 text") from None
    except IsADirectoryError:
        raise BadRequest(f"{path} is a directory") from None
