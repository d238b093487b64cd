"""Path resolution and the permission checks every credd file and directory gets."""

import os

import pytest

from credd import paths
from credd.errors import BadRequest, InsecurePath


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("CREDD_SOCK", "/x/s.sock")
    monkeypatch.setenv("CREDD_VAULT", "/x/v.db")
    assert paths.socket_path() == "/x/s.sock"
    assert paths.vault_path() == "/x/v.db"


def test_default_socket_is_under_xdg_runtime_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CREDD_SOCK")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.socket_path() == str(tmp_path / "credd" / "agent.sock")


class TestNoRuntimeDir:
    """Without XDG_RUNTIME_DIR the socket goes where only the user can create a directory:
    never /tmp/credd-<uid>, which another user can make first (and the owner, in a
    sticky /tmp, cannot remove)."""

    @pytest.fixture(autouse=True)
    def no_runtime_dir(self, monkeypatch):
        monkeypatch.delenv("CREDD_SOCK")
        monkeypatch.delenv("XDG_RUNTIME_DIR")

    def test_the_state_dir_by_default(self, monkeypatch, tmp_path):
        monkeypatch.delenv("CREDD_STATE_DIR")
        assert paths.socket_path() == str(tmp_path / "state" / "credd" / "agent.sock")
        monkeypatch.delenv("XDG_STATE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "h"))
        assert paths.socket_path() == str(tmp_path / "h" / ".local/state/credd/agent.sock")
        assert "/tmp/credd-" not in paths.socket_path()

    def test_the_same_directory_as_platformdirs_state_dir(self, monkeypatch):
        monkeypatch.delenv("CREDD_STATE_DIR")
        assert paths.runtime_dir() == paths.state_dir()

    def test_credd_state_dir_wins(self, monkeypatch, tmp_path):
        monkeypatch.setenv("CREDD_STATE_DIR", str(tmp_path / "st"))
        assert paths.socket_path() == str(tmp_path / "st" / "agent.sock")
        assert paths.fallback_note() == f"XDG_RUNTIME_DIR unset: using {tmp_path / 'st'}"

    def test_no_note_when_the_usual_place_is_used(self, monkeypatch, tmp_path):
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
        assert paths.fallback_note() == ""
        monkeypatch.delenv("XDG_RUNTIME_DIR")
        monkeypatch.setenv("CREDD_SOCK", str(tmp_path / "s"))
        assert paths.fallback_note() == ""

    def test_too_long_says_why_the_path_is_there(self, monkeypatch, tmp_path):
        monkeypatch.setenv("CREDD_STATE_DIR", "/" + "d" * 120)
        with pytest.raises(BadRequest, match="too long.*XDG_RUNTIME_DIR unset"):
            paths.check_socket_path(paths.socket_path())


def test_default_vault_is_in_the_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CREDD_VAULT")
    assert paths.vault_path() == os.path.join(os.environ["XDG_DATA_HOME"], "credd", "vault.db")


def test_ensure_private_dir_creates_0700(tmp_path):
    target = tmp_path / "a" / "b"
    paths.ensure_private_dir(str(target))
    assert (target.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777, 0o701])
def test_loose_directory_is_refused_with_the_fix(tmp_path, mode):
    target = tmp_path / "d"
    target.mkdir()
    target.chmod(mode)
    with pytest.raises(InsecurePath, match=f"chmod 700 {target}"):
        paths.ensure_private_dir(str(target))


def test_a_file_where_a_directory_should_be_is_refused(tmp_path):
    target = tmp_path / "f"
    target.write_text("")
    with pytest.raises(InsecurePath, match="not a directory"):
        paths.check_private_dir(str(target))


def test_symlinked_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(InsecurePath):
        paths.check_private_dir(str(link))


@pytest.mark.parametrize("mode, ok", [(0o600, True), (0o400, True), (0o640, False), (0o604, False)])
def test_private_file_check(tmp_path, mode, ok):
    target = tmp_path / "f"
    target.write_text("")
    target.chmod(mode)
    if ok:
        paths.check_private_file(str(target))
    else:
        with pytest.raises(InsecurePath, match=f"chmod 600 {target}"):
            paths.check_private_file(str(target))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_foreign_owned_directory_is_refused(tmp_path):
    target = tmp_path / "d"
    target.mkdir(mode=0o700)
    os.chown(target, 65534, 65534)
    with pytest.raises(InsecurePath, match="owned by uid 65534"):
        paths.check_private_dir(str(target))


def test_socket_path_too_long_is_a_clear_error():
    with pytest.raises(BadRequest, match="too long"):
        paths.check_socket_path("/tmp/" + "x" * 200)
    paths.check_socket_path("/tmp/short.sock")
