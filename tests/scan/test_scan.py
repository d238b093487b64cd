"""`credd scan` against a real agent, real files and real git repositories."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from urllib.parse import quote_plus

from tests.scan.conftest import API_KEY, DB_PASSWORD, TOKEN, hit, hits_of


def test_every_form_in_files_with_name_field_file_line(scan, tmp_path):
    tree = tmp_path / "tree"
    (tree / "conf").mkdir(parents=True)
    echoed = base64.b64encode(TOKEN.encode() + b"\n").decode()  # echo $TOKEN | base64
    (tree / "conf" / "app.env").write_text(f"# settings\nGITHUB={TOKEN}\nAUTH={echoed}\n")
    hex_key = API_KEY.encode().hex()
    letters = [i for i, c in enumerate(hex_key) if c.isalpha()]
    mixed = "".join(c.upper() if i in letters[::2] else c for i, c in enumerate(hex_key))
    (tree / "dump.hex").write_text("x\n" * 40 + TOKEN.encode().hex().upper() + f"\n{mixed}\n")
    (tree / "url.log").write_text(f"GET /login?pw={quote_plus(DB_PASSWORD)}&x=1\n")
    (tree / "data.json").write_text("{\n  " + json.dumps({"password": DB_PASSWORD})[1:] + "\n")
    (tree / "clean.txt").write_text("nothing to see\n" * 100)
    done = scan("--json", str(tree), expect=1)
    where = str(tree)
    assert sorted(hits_of(done), key=lambda h: (h["file"], h["line"], h["name"])) == [
        hit("github/token", "plain", f"{where}/conf/app.env", 2),
        hit("github/token", "base64", f"{where}/conf/app.env", 3),
        hit("prod db", "json", f"{where}/data.json", 2, field="password"),
        hit("github/token", "HEX", f"{where}/dump.hex", 41),
        hit("api/copy", "hex", f"{where}/dump.hex", 42),
        hit("api/key", "hex", f"{where}/dump.hex", 42),
        hit("prod db", "url", f"{where}/url.log", 1, field="password"),
    ]
    counts = json.loads(done.stdout)["counts"]
    assert counts["files"] == 5 and counts["values"] == 5 and counts["too_short"] == 1
    assert counts["bytes"] == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())


def test_text_report_and_summary(scan, tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text(f"one\nkey={API_KEY}\n")
    done = scan(cwd=tmp_path / "tree", expect=1)
    # one value stored in two entries: both named
    assert done.stdout.decode().splitlines() == ["a.txt:2: api/copy (plain)",
                                                 "a.txt:2: api/key (plain)"]
    err = done.stderr.decode()
    assert "found 2 leaks of 2 stored secrets in 1 file (0.0 MB)" in err
    assert "5 values searched for in 18 patterns" in err  # 22 forms, hex in any case as one
    assert "1 shorter than 4 bytes not searched for" in err


def test_nothing_found_exits_0_and_says_so(scan, tmp_path):
    tmp_path = tmp_path / "tree"
    tmp_path.mkdir()
    (tmp_path / "a.txt").write_text("nothing\n")
    done = scan(str(tmp_path), expect=0)
    assert done.stdout == b""
    assert "no stored secret found in 1 file" in done.stderr.decode()
    assert json.loads(scan("--json", str(tmp_path), expect=0).stdout)["hits"] == []


def test_binary_files_skipped_unless_asked(scan, tmp_path):
    tmp_path = tmp_path / "tree"
    tmp_path.mkdir()
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" + API_KEY.encode() + b"\n")
    (tmp_path / "late-nul.txt").write_bytes(b"x" * 9000 + b"\x00" + API_KEY.encode())
    done = scan("--json", str(tmp_path), expect=1)
    assert [h["file"] for h in hits_of(done)] == [str(tmp_path / "late-nul.txt")] * 2
    assert json.loads(done.stdout)["counts"]["binary_skipped"] == 1
    assert "1 binary skipped (--binary scans them)" in scan(str(tmp_path)).stderr.decode()
    done = scan("--json", "--binary", str(tmp_path), expect=1)
    assert {h["file"] for h in hits_of(done)} == {str(tmp_path / "blob.bin"),
                                                 str(tmp_path / "late-nul.txt")}


def test_git_dirs_skipped_and_symlinks_not_followed(scan, tmp_path):
    outside, tree = tmp_path / "outside", tmp_path / "tree"
    outside.mkdir()
    (outside / "secret.txt").write_text(TOKEN)
    (tree / ".git").mkdir(parents=True)
    (tree / ".git" / "config").write_text(TOKEN)
    (tree / "link.txt").symlink_to(outside / "secret.txt")
    (tree / "linkdir").symlink_to(outside)
    (tree / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(tree / "fifo")
    scan(str(tree), expect=0)
    done = scan("--json", str(tree / "link.txt"), expect=1)  # named on the command line: read
    assert hits_of(done)[0]["file"] == str(tree / "link.txt")


def test_value_across_the_chunk_boundary_found_once_with_its_line(scan, tmp_path):
    from credd.scan import CHUNK
    head = (b"y" * 99 + b"\n") * ((CHUNK - 10) // 100)
    head += b"z" * (CHUNK - 10 - len(head))
    data = head + TOKEN.encode() + b"\n" + b"tail " * 1000 + API_KEY.encode()
    (tmp_path / "big.log").write_bytes(data)
    hits = hits_of(scan("--json", str(tmp_path), expect=1))
    lines = data.count(b"\n", 0, CHUNK - 10) + 1
    assert [(h["name"], h["line"]) for h in hits] == [
        ("github/token", lines), ("api/copy", lines + 1), ("api/key", lines + 1)]


def test_git_history_finds_a_value_added_then_removed(scan, repo):
    repo.commit("start", README="hello\n")
    planted = repo.commit("add config", **{"conf/app.env": f"A=1\nB=2\nTOKEN={TOKEN}\n"})
    repo.commit("remove it", **{"conf/app.env": "A=1\nB=2\n"})
    repo.commit(f"rotate\n\nthe old one was {base64.b64encode(API_KEY.encode()).decode()}")
    assert TOKEN not in (repo.path / "conf" / "app.env").read_text()
    scan(cwd=repo.path, expect=0)  # the working tree is clean
    done = scan("--git", "--json", cwd=repo.path, expect=1)
    message = repo.git("rev-parse", "HEAD")
    assert hits_of(done) == [
        hit("api/copy", "base64", commit=message), hit("api/key", "base64", commit=message),
        hit("github/token", "plain", "conf/app.env", 3, commit=planted),
    ]
    assert json.loads(done.stdout)["counts"]["commits"] == 4
    text = scan("--git", cwd=repo.path, expect=1).stdout.decode()
    assert f"{planted[:12]} conf/app.env:3: github/token (plain)" in text
    assert f"{message[:12]} (commit message): api/key (base64)" in text


def test_git_history_line_numbers_and_tricky_lines(scan, repo):
    repo.commit("one", **{"a.txt": "1\n2\n3\n4\n5\n", "we ird é.txt": "x\n"})
    added = repo.commit("two", **{
        "a.txt": f"1\n2\nnew {TOKEN}\n3\n4\n5\n++ b/not-a-header\nhex {TOKEN.encode().hex()}\n",
        "we ird é.txt": f"x\n{quote_plus(DB_PASSWORD)}\n"})
    hits = hits_of(scan("--git", "--json", str(repo.path), expect=1))
    assert hits == [
        hit("github/token", "plain", "a.txt", 3, commit=added),
        hit("github/token", "hex", "a.txt", 8, commit=added),
        hit("prod db", "url", "we ird é.txt", 2, field="password", commit=added),
    ]


def test_all_refs_reaches_other_branches(scan, repo):
    repo.commit("main")
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit("side", **{"s.txt": f"{API_KEY}\n"})
    repo.git("checkout", "-q", "main")
    scan("--git", str(repo.path), expect=0)
    hits = hits_of(scan("--git", "--all-refs", "--json", str(repo.path), expect=1))
    assert {(h["name"], h["commit"], h["file"]) for h in hits} == {
        ("api/key", side, "s.txt"), ("api/copy", side, "s.txt")}


def test_objects_finds_blobs_and_dangling_ones(scan, repo):
    repo.commit("one", **{"keys/k.txt": f"key {API_KEY}\n"})
    repo.commit("gone", **{"keys/k.txt": None})
    dangling = repo.git("hash-object", "-w", "--stdin", input=TOKEN.encode())
    blob = repo.git("rev-parse", "HEAD~1:keys/k.txt")
    hits = hits_of(scan("--git", "--objects", "--json", str(repo.path), expect=1))
    assert sorted(hits, key=lambda h: (h["object"], h["name"])) == sorted([
        hit("api/copy", "plain", "keys/k.txt", 1, object=blob),
        hit("api/key", "plain", "keys/k.txt", 1, object=blob),
        hit("github/token", "plain", None, 1, object=dangling),
    ], key=lambda h: (h["object"], h["name"]))


def test_staged_changes_and_the_pre_commit_hook(scan, repo, credd_env):
    repo.commit("one", **{"a.txt": "1\n"})
    repo.write("a.txt", f"1\n{TOKEN}\n")
    repo.write("b.txt", "clean\n")
    repo.git("add", "b.txt")
    scan("--staged", cwd=repo.path, expect=0)  # the secret is not staged yet
    repo.git("add", "a.txt")
    done = scan("--staged", cwd=repo.path, expect=1)
    assert done.stdout.decode() == "a.txt:2: github/token (plain)\n"
    # the hook line docs/lifecycle.md gives, run by git itself
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexec credd scan --staged\n")
    hook.chmod(0o755)
    bin_dir = os.path.dirname(os.path.abspath(os.sys.executable))
    env = {**repo.env, **credd_env, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    blocked = subprocess.run(["git", "commit", "-qm", "leak"], cwd=repo.path, env=env,
                             capture_output=True, timeout=60)
    assert blocked.returncode == 1 and b"github/token" in blocked.stdout + blocked.stderr
    assert repo.git("log", "--format=%s") == "one"
    repo.git("reset", "-q", "a.txt")
    assert subprocess.run(["git", "commit", "-qm", "fine"], cwd=repo.path, env=env,
                          capture_output=True, timeout=60).returncode == 0


def test_usage_and_errors(scan, tmp_path):
    assert scan("--objects").returncode == 2
    assert scan("--staged", "--git").returncode == 2
    assert scan(str(tmp_path / "missing")).returncode == 5
    (tmp_path / "plain").mkdir()
    done = scan("--git", str(tmp_path / "plain"))
    assert done.returncode == 2 and b"not a git repository" in done.stderr


def test_unreadable_files_and_directories_are_counted(tmp_path, monkeypatch):
    """Permission bits do not stop root (the test user here): refuse at the OS calls."""
    from credd.scan import Needles, Scanner
    tree = tmp_path / "tree"
    (tree / "closed").mkdir(parents=True)
    (tree / "closed" / "x.txt").write_text(TOKEN)
    (tree / "locked.txt").write_text(TOKEN)
    (tree / "open.txt").write_text(TOKEN)
    real_scandir, real_open = os.scandir, os.open

    def scandir(path="."):
        if str(path).endswith("closed"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def os_open(path, flags, mode=0o777, **kwargs):
        if str(path).endswith("locked.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", os_open)
    scanner = Scanner(Needles([("github/token", None, TOKEN)]))
    hits = list(scanner.files(scanner.walk([str(tree)])))
    assert [(h.file, h.line) for h in hits] == [(str(tree / "open.txt"), 1)]
    assert (scanner.counts.unreadable, scanner.counts.files) == (2, 1)


def test_locked_agent_exits_3(scan, stored, tmp_path):
    stored.lock()
    assert scan(str(tmp_path)).returncode == 3


def test_a_repository_without_commits(scan, repo):
    scan("--git", str(repo.path), expect=0)
    repo.write("a.txt", f"{TOKEN}\n")
    repo.git("add", "a.txt")
    assert scan("--staged", cwd=repo.path, expect=1).stdout == b"a.txt:1: github/token (plain)\n"


def test_progress_bar_on_a_terminal_only(scan, stored, credd_env, tmp_path):
    from tests.cli.conftest import run_on_pty
    from tests.scan.conftest import assert_no_value
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text(f"x\n{TOKEN}\n" + "filler\n" * 20000)
    code, shown = run_on_pty(["scan", str(tree)], credd_env, [])
    assert code == 1
    assert "scanning [##############################] 0.1 MB/0.1 MB\r\n" in shown
    assert "a.txt:2: github/token (plain)" in shown
    assert_no_value(shown.encode())
    assert "scanning [" not in scan(str(tree)).stderr.decode()  # not a terminal: no bar


def test_history_progress_counts_commits_on_a_terminal(stored, credd_env, repo):
    from tests.cli.conftest import run_on_pty
    for i in range(3):
        repo.commit(f"c{i}", **{"a.txt": f"{i}\n"})
    code, shown = run_on_pty(["scan", "--git", str(repo.path)], credd_env, [])
    assert code == 0
    assert "commits [##############################] 3/3\r\n" in shown
