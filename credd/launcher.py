"""The installed `credd` command: a script whose Python starts without `site`.

`import site` (the venv's site-packages and their .pth files) is a fifth to a
half of a bare Python start, and `credd get` / `credd status` need nothing
from site-packages. So the `credd` script this module writes runs its
interpreter with `-I -S` and puts credd's own directory on `sys.path` by hand.
The stdlib-only fast path (`credd.cli.fast`) answers if it can; otherwise
`site.main()` loads site-packages as a normal start would, and the argparse
CLI carries on in the same process.

pip's console-script generator cannot put flags on a shebang (and pip
rewrites `#!python` shebangs without them), so `make run`, `make test` and
`make install-user` write the launcher over pip's script after `pip install`:

    python -m credd.launcher install BIN_DIR

What isolation changes for the `credd` command, on every path: PYTHONPATH,
PYTHONHOME, PYTHONWARNINGS and the other PYTHON* variables are ignored, the
user site-packages is not added, and the script's directory is not on
`sys.path`. A credential tool is better off not picking up modules from the
environment; `python -m credd` still honours all of it.
"""

from __future__ import annotations

import sys

#: Linux reads at most 127 bytes of a shebang before 5.1 (255 since), and
#: splits it at the first blank: longer or blank-holding interpreter paths go
#: through /bin/sh, as pip's own scripts do (~1 ms more).
SHEBANG_MAX = 127
FLAGS = "-IS"  # one argument: Linux passes the rest of a shebang line as one

SCRIPT = """\
# The `credd` command, written by `python -m credd.launcher install` (credd/launcher.py):
# the interpreter runs isolated and without site, for a fast `credd get`.
import sys
sys.path.append({pkg_dir!r})
from credd.cli.fast import fast_main
code = fast_main(sys.argv[1:])
if code is None:
    from credd.launcher import full_main
    sys.exit(full_main({pkg_dir!r}, sys.argv[1:]))
sys.stdout.flush()
sys.stderr.flush()
import os
os._exit(code)
"""
# Why the fast path leaves by os._exit: once its output is flushed, the interpreter's
# finalization (~1.2 ms here, a tenth of `credd get`) has nothing left to do for a
# process that opened one socket, closed it and registered no atexit handler.


def full_main(pkg_dir: str, args: list[str]) -> int:
    """The argparse CLI, after loading what `-S` skipped (the fast path declined `args`).

    This module is imported only here, so the fast path pays for none of it."""
    _load_site(pkg_dir)
    from credd.cli import full_main as argparse_main
    return argparse_main(args)


def _load_site(pkg_dir: str) -> None:
    """Site-packages, .pth files and sitecustomize, as a normal start loads them. Our own
    entry is taken out first, so that site (or an editable checkout's .pth) puts it where
    a normal start would: behind the standard library and site-packages."""
    if pkg_dir in sys.path:
        sys.path.remove(pkg_dir)
    import site
    site.main()
    if pkg_dir not in sys.path:  # a checkout that no .pth names (a launcher for tests)
        sys.path.append(pkg_dir)


def package_parent() -> str:
    """The directory holding the `credd` package this interpreter imports."""
    import os

    import credd
    return os.path.dirname(os.path.dirname(os.path.abspath(credd.__file__)))


def shebang(python: str) -> str:
    """The script's first line(s): a direct shebang with the flags, or a /bin/sh hop."""
    line = f"#!{python} {FLAGS}"
    if len(line) <= SHEBANG_MAX and not any(c.isspace() for c in python):
        return line + "\n"
    quoted = "'" + python.replace("'", "'\"'\"'") + "'"
    # Valid sh and valid Python: sh execs the interpreter, Python sees one string.
    return f"#!/bin/sh\n'''exec' {quoted} {FLAGS} \"$0\" \"$@\"\n' '''\n"


def script(python: str, pkg_dir: str) -> str:
    return shebang(python) + SCRIPT.format(pkg_dir=pkg_dir)


def install(bin_dir: str, python: str | None = None, pkg_dir: str | None = None) -> str:
    """Write BIN_DIR/credd, replacing what is there (pip's script) in one rename.

    Rewriting the same launcher is harmless; the file is 0755 and never
    half-written, so a `credd get` running meanwhile sees the old or the new one.
    """
    import os
    import tempfile

    target = os.path.join(bin_dir, "credd")
    text = script(python or sys.executable, pkg_dir or package_parent())
    fd, tmp = tempfile.mkstemp(prefix=".credd-", dir=bin_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    """`python -m credd.launcher install BIN_DIR`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "install":
        sys.stderr.write("usage: python -m credd.launcher install BIN_DIR\n")
        return 2
    install(args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
