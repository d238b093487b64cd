"""The shipped systemd units and launchd plist: what the issue asks of them, checked by the
real tools."""

from __future__ import annotations

import plistlib
import re

import pytest

from tests.conftest import REPO
from tests.service.helpers import analyze

UNITS = REPO / "systemd"
PLIST = REPO / "launchd" / "dev.credd.agent.plist"


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


def values(parsed, section: str, key: str) -> list[str]:
    return parsed[section].get(key, [])


def test_socket_unit_is_private_and_in_the_runtime_dir():
    s = unit("credd.socket")
    assert values(s, "Socket", "ListenStream") == ["%t/credd/agent.sock"]
    assert values(s, "Socket", "SocketMode") == ["0600"]
    assert values(s, "Socket", "DirectoryMode") == ["0700"]
    assert values(s, "Install", "WantedBy") == ["sockets.target"]


@pytest.mark.parametrize("key, value", [
    ("Type", "notify"), ("LimitCORE", "0"), ("UMask", "0077"), ("NoNewPrivileges", "yes"),
    ("LockPersonality", "yes"), ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"), ("RestrictAddressFamilies", "AF_UNIX"),
    ("PrivateUsers", "yes"),
])
def test_service_unit_hardening(key, value):
    assert values(unit("credd.service"), "Service", key) == [value]


def test_namespace_options_come_with_private_users():
    """In a user unit, namespace options do nothing without PrivateUsers=yes."""
    service = unit("credd.service")
    namespaced = [k for k in service["Service"]
                  if k.startswith(("Private", "Protect")) and k != "PrivateUsers"]
    assert namespaced, "expected namespace hardening options"
    assert values(service, "Service", "PrivateUsers") == ["yes"]


def test_service_starts_credd_serve_in_the_foreground():
    [exec_start] = values(unit("credd.service"), "Service", "ExecStart")
    assert exec_start.split()[1:] == ["serve"]
    assert values(unit("credd.service"), "Unit", "Requires") == ["credd.socket"]


def test_shipped_units_pass_systemd_analyze_verify(unit_env):
    result = analyze(unit_env, "verify", "--user", str(UNITS / "credd.socket"),
                     str(UNITS / "credd.service"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd-analyze warned:\n{result.stderr}"


def test_verify_does_flag_a_bad_unit(unit_env, tmp_path):
    """The check above can fail: an unknown directive is a warning on stderr."""
    bad = tmp_path / "credd.service"
    bad.write_text((UNITS / "credd.service").read_text().replace("UMask=", "UMaks="))
    (tmp_path / "credd.socket").write_text((UNITS / "credd.socket").read_text())
    result = analyze(unit_env, "verify", "--user", str(tmp_path / "credd.socket"), str(bad))
    assert "UMaks" in result.stderr


def test_security_score_is_the_one_documented(unit_env):
    result = analyze(unit_env, "security", "--user", "--offline=yes", "--no-pager",
                     str(UNITS / "credd.service"))
    found = re.search(r"Overall exposure level for credd\.service: (\d+\.\d+) (\w+)",
                      result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    score, verdict = found.groups()
    assert float(score) <= 2.0, f"the unit's exposure got worse: {score} {verdict}"
    docs = (REPO / "docs" / "service.md").read_text()
    assert f"{score} {verdict}" in docs, f"docs/service.md must record the score {score} {verdict}"


def test_launchd_plist_keys():
    plist = plistlib.loads(PLIST.read_bytes())
    assert plist["Label"] == "dev.credd.agent"
    assert plist["ProgramArguments"][1:] == ["serve"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # restart on failure only
    assert plist["Umask"] == 63 == 0o077
    assert plist["SoftResourceLimits"]["Core"] == 0 == plist["HardResourceLimits"]["Core"]
    assert plist["StandardOutPath"].endswith("/Library/Logs/credd/agent.log")
    assert plist["StandardErrorPath"] == plist["StandardOutPath"]
    assert PLIST.name == f"{plist['Label']}.plist"


def test_package_ships_the_same_files():
    """`credd service install` reads credd/service_files/, which must be these files."""
    shipped = REPO / "credd" / "service_files"
    for source in (UNITS / "credd.socket", UNITS / "credd.service", PLIST):
        assert (shipped / source.name).read_bytes() == source.read_bytes()


def test_backup_units_pass_systemd_analyze_verify(unit_env):
    result = analyze(unit_env, "verify", "--user", str(UNITS / "credd-backup.timer"),
                     str(UNITS / "credd-backup.service"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd-analyze warned:\n{result.stderr}"


def test_backup_units_run_credd_backup_daily():
    [exec_start] = values(unit("credd-backup.service"), "Service", "ExecStart")
    assert exec_start.split()[1:] == ["backup", "--keep", "14"]
    assert values(unit("credd-backup.service"), "Service", "Type") == ["oneshot"]
    assert values(unit("credd-backup.service"), "Service", "UMask") == ["0077"]
    timer = unit("credd-backup.timer")
    assert values(timer, "Timer", "OnCalendar") == ["daily"]
    assert values(timer, "Timer", "Persistent") == ["true"]
    assert values(timer, "Install", "WantedBy") == ["timers.target"]
