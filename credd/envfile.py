"""Environment files and variable names: parsing `.env`, writing dotenv and shell.

Parsing follows the common dotenv dialect (python-dotenv, docker compose):

    # comment                 blank lines and comments are skipped
    export KEY=value          `export ` is optional
    KEY=value # note          unquoted: trimmed, ` #...` starts a comment
    KEY='literal $value'      single quotes: taken as is, may span lines
    KEY="a\\nb \\"q\\""         double quotes: \\n \\r \\t \\" \\\\ \\$ escapes, may span lines

Errors name the line number, never the line: it may hold a secret.

Variable names derive from entry names predictably (`var_name`): upper-cased,
every run of characters outside [A-Za-z0-9] becomes one `_`, leading and
trailing `_` dropped, and a leading digit gets a `_` prefix. A field adds
`_FIELD` the same way: `github/token` → `GITHUB_TOKEN`, field `password`
of `prod db` → `PROD_DB_PASSWORD`.
"""

from __future__ import annotations

import re

from credd.errors import BadRequest

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


def is_var_name(text: str) -> bool:
    """A name an env file may assign (and a safe file name for `credd run --files`)."""
    return bool(_KEY.fullmatch(text))


def var_name(*parts: str) -> str:
    """`github/token` → `GITHUB_TOKEN`; several parts are joined the same way."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", "_".join(parts)).strip("_").upper()
    if not name:
        raise BadRequest(f"cannot derive a variable name from {'/'.join(parts)!r}: use --map")
    return "_" + name if name[0].isdigit() else name


def parse_dotenv(text: str, source: str = "env file") -> list[tuple[str, str]]:
    """KEY/value pairs in file order (a repeated key appears twice; the last one wins)."""
    pairs: list[tuple[str, str]] = []
    pos, line_no, n = 0, 1, len(text)
    while pos < n:
        end = text.find("\n", pos)
        end = n if end < 0 else end
        line = text[pos:end].strip()
        start_line = line_no
        if not line or line.startswith("#"):
            pos, line_no = end + 1, line_no + 1
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, eq, _rest = line.partition("=")
        key = key.strip()
        if not eq or not _KEY.fullmatch(key):
            raise BadRequest(f"{source}, line {start_line}: expected KEY=VALUE")
        value_at = text.index("=", pos) + 1
        value, pos, line_no = _value(text, value_at, line_no, source)
        pairs.append((key, value))
    return pairs


def _value(text: str, at: int, line_no: int, source: str) -> tuple[str, int, int]:
    """Parse the value starting at `at`; return it, the next line's offset and its number."""
    while at < len(text) and text[at] in " \t":
        at += 1
    quote = text[at] if at < len(text) else ""
    if quote not in ("'", '"'):
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        raw = text[at:end]
        raw = re.split(r"\s+#", raw, maxsplit=1)[0]
        return raw.strip(), end + 1, line_no + 1
    out, i = [], at + 1
    while i < len(text) and text[i] != quote:
        ch = text[i]
        if quote == '"' and ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    if i >= len(text):
        raise BadRequest(f"{source}, line {line_no}: unterminated {quote} quote")
    line_no += text.count("\n", at, i)
    rest_end = text.find("\n", i)
    rest_end = len(text) if rest_end < 0 else rest_end
    trailing = text[i + 1:rest_end].strip()
    if trailing and not trailing.startswith("#"):
        raise BadRequest(f"{source}, line {line_no}: unexpected text after the closing quote")
    return "".join(out), rest_end + 1, line_no + 1


def dotenv_quote(value: str) -> str:
    """A value that `parse_dotenv` reads back exactly (single quotes unless it holds one)."""
    if "'" not in value:
        return f"'{value}'"
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def format_dotenv(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{key}={dotenv_quote(value)}\n" for key, value in pairs)


def format_shell(pairs: list[tuple[str, str]]) -> str:
    """`export VAR='...'` lines safe to `eval` in sh, bash and zsh."""
    import shlex
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in pairs)
