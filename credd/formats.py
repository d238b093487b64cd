"""The shapes secrets leave and enter credd in: export renderers and import parsers.

Pure functions over plain data (no agent, no files): `credd export` and
`credd import` fetch and store, these only translate.

Export works on `Item(ref, var, value)`: one variable per entry value
(`NAME` → var_name(NAME)) and per field (`NAME/FIELD` → var_name(NAME, FIELD)),
unless `--map REF=VAR` says otherwise. The JSON format is credd's own,
lossless (kind, service, tags, fields with their secrecy, notes) and is what
`credd import --format json` reads back.

Import yields `Draft`s: an entry name and the arguments of `Client.set`.
"""

from __future__ import annotations

import base64
import configparser
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from credd.envfile import format_dotenv, format_shell, is_var_name, parse_dotenv, var_name
from credd.errors import BadRequest
from credd.refs import SCHEME, is_ref
from credd.rules import DEFAULT_KIND

if TYPE_CHECKING:
    from collections.abc import Sequence

    from credd.protocol import EntryMeta, Field, Revealed

JSON_FORMAT = "credd-export"
JSON_VERSION = 1
#: Field names that, in an imported JSON object, are identifiers rather than secrets.
PLAIN_FIELDS = frozenset({"username", "user", "login", "email", "host", "hostname", "port",
                          "url", "region", "output", "account", "database", "server",
                          "service"})


class Item(NamedTuple):
    ref: str      # NAME or NAME/FIELD
    var: str      # the variable (or file, or data key) it is exported as
    value: str


class Planned(NamedTuple):
    """One value to export: the entry's own (field None) or one of its fields."""

    name: str
    field: str | None
    var: str

    @property
    def ref(self) -> str:
        return self.name if self.field is None else f"{self.name}/{self.field}"


class Draft(NamedTuple):
    name: str
    fields: dict[str, Any]  # keyword arguments of Client.set / protocol.Set


class Skipped(NamedTuple):
    """Something in the input that is not imported, and why (the import lists each one)."""

    what: str
    why: str


# ---------------------------------------------------------------- export

def plan_items(metas: Sequence[EntryMeta], mapping: dict[str, str],
               folder: str = "") -> list[Planned]:
    """Every value and field of the entries with its variable, checked for clashes.

    Under `folder` (`export --from`) a variable is named after the rest of the entry's
    name, kept as it is when that is a variable name already (`OPENAI_API_KEY`,
    `database_url`): what `import --into` made from a dotenv file gives the file back."""
    planned = []
    for m in metas:
        rest = _within(m.name, folder)
        parts = ([(None, _var_of(rest, folder))] if m.has_value else []) + [
            (f, var_name(rest, f)) for f in [*m.fields, *m.secret_fields]]
        planned += [Planned(m.name, f, var) for f, var in parts]
    planned = [p._replace(var=mapping.get(p.ref) or p.var) for p in planned]
    unknown = sorted(set(mapping) - {p.ref for p in planned})
    if unknown:
        raise BadRequest(f"--map names references not exported: {', '.join(unknown)}")
    seen: dict[str, str] = {}
    for p in planned:
        if p.var in seen:
            raise BadRequest(f"{seen[p.var]} and {p.ref} both become {p.var}: rename one with "
                             f"--map {p.ref}=OTHER_NAME")
        seen[p.var] = p.ref
    return planned


def _within(name: str, folder: str) -> str:
    return name[len(folder.strip("/")) + 1:] if folder.strip("/") else name


def _var_of(rest: str, folder: str) -> str:
    """An entry value's variable: its name as it is when exported from a folder and already
    a variable name a shell accepts, else derived (envfile.var_name)."""
    return rest if folder and rest.isidentifier() and rest.isascii() else var_name(rest)


def parse_map(pairs: Iterable[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        ref, eq, var = pair.partition("=")
        ref = ref.removeprefix(SCHEME)
        if not eq or not ref or not is_var_name(var):
            raise BadRequest(f"--map wants NAME=VAR or NAME/FIELD=VAR with VAR made of letters, "
                             f"digits, _ . - (not starting with a digit); got {pair!r}")
        mapping[ref] = var
    return mapping


def render_flat(fmt: str, items: list[Item], *, secret_name: str = "credd-secrets") -> bytes:
    pairs = [(i.var, i.value) for i in items]
    if fmt == "dotenv":
        return format_dotenv(pairs).encode()
    if fmt == "shell":
        return format_shell(pairs).encode()
    if fmt == "k8s-secret":
        return k8s_secret(secret_name, pairs).encode()
    raise BadRequest(f"unknown export format {fmt!r}")


def k8s_secret(name: str, pairs: list[tuple[str, str]]) -> str:
    """A Kubernetes Secret manifest (YAML; keys and names need no quoting)."""
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"  name: {json.dumps(name)}",
             "type: Opaque", "data:" if pairs else "data: {}"]
    lines += [f"  {var}: {base64.b64encode(value.encode()).decode()}" for var, value in pairs]
    return "\n".join(lines) + "\n"


def export_json(revealed: Sequence[Revealed]) -> bytes:
    """credd's lossless export of revealed entries (protocol.Revealed)."""
    entries = []
    for r in revealed:
        m = r.entry
        fields = [{"name": k, "value": v, "secret": False} for k, v in m.fields.items()]
        fields += [{"name": k, "value": v, "secret": True} for k, v in r.secret_fields.items()]
        entry = {"name": m.name, "kind": m.kind, "service": m.service, "tags": list(m.tags),
                 "fields": fields}
        if m.has_value:
            entry["value"] = r.value
        if r.notes:
            entry["notes"] = r.notes
        for key in ("rotate_after", "expires"):
            if getattr(m, key) is not None:
                entry[key] = getattr(m, key)
        entries.append(entry)
    doc = {"format": JSON_FORMAT, "version": JSON_VERSION, "entries": entries}
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------- import

def import_dotenv(text: str, into: str = "") -> tuple[list[Draft], list[Skipped]]:
    """KEY=value → entry `into/KEY`, the name as written and an empty value kept, in file
    order, so that `credd export --from INTO` writes the same variables back. A reference
    names a secret rather than being one, and of a repeated key the last value wins: both
    are skipped, and said."""
    drafts: dict[str, Draft] = {}
    skipped: list[Skipped] = []
    for key, value in parse_dotenv(text):
        if key in drafts:
            skipped.append(Skipped(key, "set again further down: the last value is imported"))
        if is_ref(value):
            drafts.pop(key, None)
            skipped.append(Skipped(key, "a credd:// reference names a secret, it holds none"))
            continue
        drafts[key] = Draft(_join(into, key), {"value": value})
    return list(drafts.values()), skipped


def import_env(environ: dict[str, str], prefix: str, into: str = "") -> list[Draft]:
    """`<prefix>KEY` variables; a JSON object value becomes a multi-field entry."""
    if not prefix:
        raise BadRequest("--format env needs --prefix (e.g. --prefix PLATFORM_CRED_)")
    return [env_draft(_join(into, key), value) for _, key, value in env_entries(environ, prefix)]


def env_entries(environ: Mapping[str, str], prefix: str) -> list[tuple[str, str, str]]:
    """(variable, key, value) of each `<prefix>KEY` variable that has a value, by variable;
    the key is KEY lower-cased. `credd import --format env` and the env mount share this."""
    return [(var, var[len(prefix):].lower(), environ[var]) for var in sorted(environ)
            if var.startswith(prefix) and var != prefix and environ[var]]


def env_draft(name: str, value: str) -> Draft:
    """A variable's entry: a JSON object is a multi-field entry (PLAIN_FIELDS in clear, the
    others secret, no value); anything else is the entry's value."""
    obj = _json_object(value)
    return Draft(name, {"value": value} if obj is None else {"fields": _fields(obj)})


def _json_object(value: str) -> dict[str, str] | None:
    if not value.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not obj:
        return None
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}


def _fields(obj: dict[str, str]) -> list[Field]:
    from credd.protocol import Field
    return [Field(name=k, value=v, secret=k.lower() not in PLAIN_FIELDS) for k, v in obj.items()]


def import_aws(text: str, into: str = "aws") -> list[Draft]:
    """Each `~/.aws/credentials` profile → entry `aws/<profile>` with its keys as fields."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source="aws credentials")
    except configparser.Error as exc:
        raise BadRequest(f"not an AWS credentials file: {type(exc).__name__}") from None
    drafts = []
    for profile in parser.sections():
        obj = dict(parser.items(profile))
        if obj:
            drafts.append(Draft(_join(into, profile), {"kind": "aws", "fields": _fields(obj)}))
    return drafts


def import_json(text: str, into: str = "") -> list[Draft]:
    """credd's own export (see export_json), under `into/` if given."""
    from credd.protocol import Field
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
        raise BadRequest(f"not a credd export (expected \"format\": \"{JSON_FORMAT}\")")
    if doc.get("version") != JSON_VERSION:
        raise BadRequest(f"credd export version {doc.get('version')!r} is not supported")
    drafts = []
    for n, e in enumerate(doc.get("entries", [])):
        try:
            fields = [Field(name=f["name"], value=f["value"], secret=bool(f.get("secret", True)))
                      for f in e.get("fields", [])]
            args = {"kind": e.get("kind", DEFAULT_KIND), "service": e.get("service", ""),
                    "tags": list(e.get("tags", [])), "fields": fields,
                    "value": e.get("value"), "notes": e.get("notes"),
                    "rotate_after": e.get("rotate_after"), "expires": e.get("expires")}
            drafts.append(Draft(_join(into, e["name"]),
                                {k: v for k, v in args.items() if v is not None}))
        except (KeyError, TypeError, AttributeError):
            raise BadRequest(f"credd export: entry #{n + 1} is malformed") from None
    return drafts


def _join(into: str, name: str) -> str:
    return f"{into.strip('/')}/{name}" if into.strip("/") else name
