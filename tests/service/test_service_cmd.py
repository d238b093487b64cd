"""`credd service install | status | uninstall`, run as a user would, checked by systemd-analyze."""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess

from credd.cli.service import shell_quote, systemd_word
from tests.service.helpers import PYTHON, analyze


def unit_dir(env) -> str:
    return os.path.join(env["XDG_CONFIG_HOME"], "systemd", "user")


def test_install_writes_units_that_verify(run_credd, unit_env):
    result = run_credd("service", "install", "--systemd", check=True)
    socket_unit = os.path.join(unit_dir(unit_env), "credd.socket")
    service_unit = os.path.join(unit_dir(unit_env), "credd.service")
    assert f"wrote {service_unit}" in result.stdout
    assert "systemctl --user enable --now credd.socket" in result.stdout
    assert "CREDD_SOCK" not in result.stdout  # the default socket is the service's
    exec_start = [line for line in open(service_unit) if line.startswith("ExecStart=")]
    credd = os.path.join(os.path.dirname(PYTHON), "credd")
    assert exec_start == [f"ExecStart={credd} serve\n"]
    checked = analyze(unit_env, "verify", "--user", socket_unit, service_unit)
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr


def test_install_is_idempotent_and_status_tracks_it(run_credd):
    status = run_credd("service", "status", "--systemd")
    assert status.returncode == 1 and "missing" in status.stdout
    run_credd("service", "install", "--systemd", check=True)
    again = run_credd("service", "install", "--systemd", check=True)
    assert "unchanged" in again.stdout and "wrote" not in again.stdout
    status = run_credd("service", "status", "--systemd")
    assert status.returncode == 0, status.stdout
    assert "installed" in status.stdout and "enabled: no" in status.stdout
    assert "no agent answers" in status.stdout


def test_status_notices_an_outdated_unit(run_credd, credd_env):
    run_credd("service", "install", "--systemd", check=True)
    path = os.path.join(unit_dir(credd_env), "credd.service")
    with open(path, "a") as f:
        f.write("# edited\n")
    status = run_credd("service", "status", "--systemd")
    assert status.returncode == 1 and "outdated" in status.stdout


def test_dry_run_writes_nothing(run_credd, credd_env):
    result = run_credd("service", "install", "--systemd", "--dry-run", check=True)
    assert "would write" in result.stdout and "ExecStart=" in result.stdout
    assert not os.path.exists(unit_dir(credd_env))


def test_uninstall_removes_units_and_the_enable_link(run_credd, credd_env):
    run_credd("service", "install", "--systemd", check=True)
    wants = os.path.join(unit_dir(credd_env), "sockets.target.wants")
    os.makedirs(wants)
    os.symlink("../credd.socket", os.path.join(wants, "credd.socket"))  # what `enable` makes
    dry = run_credd("service", "uninstall", "--systemd", "--dry-run", check=True)
    assert dry.stdout.count("would remove") == 3
    result = run_credd("service", "uninstall", "--systemd", check=True)
    assert "systemctl --user disable --now credd.socket credd.service" in result.stdout
    assert os.listdir(unit_dir(credd_env)) == ["sockets.target.wants"]
    assert os.listdir(wants) == []


def test_socket_hint_when_the_shell_uses_another_path(run_credd, credd_env):
    result = run_credd("service", "install", "--systemd", "--dry-run", check=True,
                       env={"CREDD_SOCK": "/tmp/elsewhere.sock"})
    expected = os.path.join(credd_env["XDG_RUNTIME_DIR"], "credd", "agent.sock")
    assert f"export CREDD_SOCK={expected}" in result.stdout


def test_launchd_install_writes_a_plist_with_absolute_paths(run_credd, credd_env):
    result = run_credd("service", "install", "--launchd", check=True)
    home = credd_env["HOME"]
    target = os.path.join(home, "Library", "LaunchAgents", "dev.credd.agent.plist")
    assert f"launchctl bootstrap gui/{os.getuid()} {target}" in result.stdout
    with open(target, "rb") as f:
        plist = plistlib.load(f)
    credd = os.path.join(os.path.dirname(PYTHON), "credd")
    assert plist["ProgramArguments"] == [credd, "serve"]
    log = os.path.join(home, "Library", "Logs", "credd", "agent.log")
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == log
    assert plist["Umask"] == 63 and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert os.stat(os.path.dirname(log)).st_mode & 0o777 == 0o700
    result = run_credd("service", "uninstall", "--launchd", check=True)
    assert f"launchctl bootout gui/{os.getuid()}/dev.credd.agent" in result.stdout
    assert not os.path.exists(target)


def test_execstart_quoting_survives_spaces_and_specifiers(unit_env, tmp_path):
    """A credd under a path with a space, % and $ still verifies and names the right file."""
    odd = tmp_path / "my tools %i $HOME"
    odd.mkdir()
    os.symlink(os.path.join(os.path.dirname(PYTHON), "credd"), odd / "credd")
    from credd.cli import service
    plan = service.plan("systemd", [str(odd / "credd")])
    for path, text in plan.files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    checked = analyze(unit_env, "verify", "--user", *plan.files)
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr
    assert systemd_word("/a b/c") == '"/a b/c"'
    assert systemd_word("100%") == "100%%"
    assert systemd_word("$X") == "\"$$X\"" and systemd_word("/$X", program=True) == "\"/$X\""


def test_shell_quote_round_trips_in_a_real_shell():
    value = "/tmp/it's a $path with `ticks` and \\ \"quotes\""
    out = subprocess.run(["sh", "-c", f"printf %s {shell_quote('sh', value)}"],
                         capture_output=True, text=True, check=True).stdout
    assert out == value
    assert shlex.split(shell_quote("sh", value)) == [value]
