"""State has one owner: no module of credd writes another object's private attribute
(`x._foo = ...` where x is not self or cls), and no module but credd/vault/vault.py reads
a Vault's (`vault._foo`). Helpers get what they need as parameters or public methods."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CREDD = Path(__file__).resolve().parent.parent / "credd"
VAULT = CREDD / "vault" / "vault.py"

pytestmark = pytest.mark.timeout(30)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owner(node: ast.expr) -> str | None:
    """The name an attribute hangs on: `x` in x._foo, `vault` in state.vault._foo."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, (ast.Assign, ast.Delete)):
        found = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        found = [node.target]
    else:
        return []
    out: list[ast.expr] = []
    while found:  # unpack a, b._c = ... and (x._y, z) = ...
        target = found.pop()
        if isinstance(target, (ast.Tuple, ast.List)):
            found += target.elts
        elif isinstance(target, ast.Starred):
            found.append(target.value)
        else:
            out.append(target)
    return out


def violations(root: Path = CREDD) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(root.parent)
        for node in ast.walk(tree):
            for target in _targets(node):
                if (isinstance(target, ast.Attribute) and _private(target.attr)
                        and _owner(target.value) not in ("self", "cls")):
                    found.append(f"{where}:{target.lineno}: writes {ast.unparse(target)}")
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
                    and _private(node.attr) and _owner(node.value) == "vault"
                    and path != VAULT):
                found.append(f"{where}:{node.lineno}: reads {ast.unparse(node)}")
    return found


def test_no_module_touches_another_objects_private_state():
    assert violations() == []


def test_the_scan_finds_what_it_forbids(tmp_path):
    (tmp_path / "credd").mkdir()
    (tmp_path / "credd" / "bad.py").write_text(
        "def f(vault, other, self):\n"
        "    vault._keys = None\n"
        "    a, other.inner._cache = 1, 2\n"
        "    other._n += 1\n"
        "    self._fine = vault._generation\n"
        "    other.__dict__ = {}\n")
    assert [v.split(": ", 1)[1] for v in violations(tmp_path / "credd")] == [
        "writes vault._keys", "writes other.inner._cache", "writes other._n",
        "reads vault._generation"]
