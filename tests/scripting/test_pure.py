"""References, env files, export/import formats, redaction forms, resolve(): no agent needed."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
from urllib.parse import quote, quote_plus

import pytest

from credd import formats, refs
from credd.envfile import dotenv_quote, format_dotenv, parse_dotenv, var_name
from credd.errors import AgentUnavailable, BadRequest, InsecurePath, NotFound
from credd.files import write_private
from credd.mask import REPLACEMENT
from credd.protocol import EntryMeta, Revealed
from credd.redact import RedactingFilter, encoded_forms, redactor
from credd.resolver import resolve

R = REPLACEMENT.decode()
TRICKY = ["plain", "with space", "it's", 'dq"uote', "back\\slash", "$HOME `cmd`", "multi\nline",
          "tab\there", "#hash", " lead", "trail ", "", "ünïcode ✓", "a=b", "'both\" \\n'"]


class TestRefs:
    def test_parse(self):
        assert refs.parse("credd://github") == "github"
        assert refs.parse("credd://a b/c/field") == "a b/c/field"
        for bad in ("github", "credd://", "credd://a//b", "credd://a/", "credd://a\nb"):
            with pytest.raises(BadRequest):
                refs.parse(bad)

    def test_template_refs_and_render(self):
        t = "a={{ credd://x/y }} b={{credd://prod db/pw}} again={{  credd://x/y  }} {{ other }}"
        assert refs.find_template_refs(t) == ["credd://x/y", "credd://prod db/pw"]
        out = refs.render(t, {"credd://x/y": "V1", "credd://prod db/pw": "V2"})
        assert out == "a=V1 b=V2 again=V1 {{ other }}"

    def test_resolve_all_names_every_missing(self):
        def resolver(wanted):
            raise NotFound("x", names=["credd://b", "credd://c"])
        with pytest.raises(NotFound) as err:
            refs.resolve_all(["credd://a", "credd://b", "credd://c"], resolver)
        assert err.value.names == ["credd://b", "credd://c"]
        assert "credd://b, credd://c" in err.value.message
        calls = []
        resolved = refs.resolve_all(["credd://a", "credd://a"],
                                    lambda w: calls.append(w) or {"credd://a": "1"})
        assert resolved == {"credd://a": "1"}
        assert calls == [["credd://a"]]  # one round trip, deduplicated

    def test_locate_an_entry_by_its_whole_name_first_then_a_field(self):
        metas = {m.name: m for m in [EntryMeta(name="db", fields={"host": "h"},
                                               secret_fields=("password",)),
                                     EntryMeta(name="a/b"), EntryMeta(name="a", fields={"b": "f"})]}
        db = metas["db"]
        assert refs.locate("db/password", metas.get) == ("db", "password", db)
        assert refs.locate("credd://db/host", metas.get) == ("db", "host", db)
        assert refs.locate("db", metas.get) == ("db", None, db)
        assert refs.locate("a/b", metas.get) == ("a/b", None, metas["a/b"])  # the name wins
        assert refs.locate("db/other", metas.get) is None
        assert refs.locate("nope/password", metas.get) is None
        assert refs.field_shadowed("a", "b", set(metas))
        assert not refs.field_shadowed("db", "password", set(metas))


class TestEnvFile:
    def test_parse_dialect(self):
        text = ("# comment\n\nexport A=1\nB = two words # note\nC='lit $x # not'\n"
                'D="l1\\nl2 \\"q\\" \\\\ \\$"\nE="multi\nline"\nF=\nG=a#b\nA=last\n')
        assert parse_dotenv(text) == [("A", "1"), ("B", "two words"), ("C", "lit $x # not"),
                                      ("D", 'l1\nl2 "q" \\ $'), ("E", "multi\nline"), ("F", ""),
                                      ("G", "a#b"), ("A", "last")]

    def test_errors_name_the_line_not_the_content(self):
        with pytest.raises(BadRequest, match="line 2") as err:
            parse_dotenv("A=1\nsecret-without-equals\n")
        assert "secret-without" not in err.value.message
        with pytest.raises(BadRequest, match="unterminated"):
            parse_dotenv("A='open\n")

    def test_quote_round_trip(self):
        pairs = [(f"V{i}", v) for i, v in enumerate(TRICKY)]
        assert parse_dotenv(format_dotenv(pairs)) == pairs
        assert all(parse_dotenv(f"X={dotenv_quote(v)}") == [("X", v)] for v in TRICKY)

    def test_var_names(self):
        assert var_name("github/token") == "GITHUB_TOKEN"
        assert var_name("prod db", "password") == "PROD_DB_PASSWORD"
        assert var_name("9lives/x-y.z") == "_9LIVES_X_Y_Z"
        with pytest.raises(BadRequest):
            var_name("///")

    def test_shell_format_evals_back(self):
        pairs = [(f"V{i}", v) for i, v in enumerate(TRICKY)]
        script = formats.render_flat("shell", [formats.Item("r", k, v) for k, v in pairs]).decode()
        script += "".join(f'printf "%s\\0" "${k}"\n' for k, _ in pairs)
        out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
        assert out.decode().split("\0")[:-1] == [v for _, v in pairs]


class TestFormats:
    metas = [EntryMeta(name="github/token", has_value=True),
             EntryMeta(name="db", fields={"host": "db.local"}, secret_fields=("password",))]

    def test_plan_and_map(self):
        planned = formats.plan_items(self.metas, {"db/password": "PGPASSWORD"})
        assert [(p.ref, p.var) for p in planned] == [
            ("github/token", "GITHUB_TOKEN"), ("db/host", "DB_HOST"), ("db/password", "PGPASSWORD")]
        assert [(p.name, p.field) for p in planned] == [
            ("github/token", None), ("db", "host"), ("db", "password")]
        under = formats.plan_items([EntryMeta(name="app/OPENAI_API_KEY", has_value=True),
                                    EntryMeta(name="app/db url", has_value=True),
                                    EntryMeta(name="app/lower_case", has_value=True)], {}, "app")
        assert [p.var for p in under] == ["OPENAI_API_KEY", "DB_URL", "lower_case"]
        with pytest.raises(BadRequest, match="both become"):
            formats.plan_items([EntryMeta(name="a-b", has_value=True),
                                EntryMeta(name="a_b", has_value=True)], {})
        with pytest.raises(BadRequest, match="not exported"):
            formats.plan_items(self.metas, {"nope": "X"})
        assert formats.parse_map(["credd://a/b=AB"]) == {"a/b": "AB"}
        for bad in ("a", "a=", "=X", "a=../x", "a=1X"):
            with pytest.raises(BadRequest):
                formats.parse_map([bad])

    def test_k8s_secret(self):
        out = formats.render_flat("k8s-secret", [formats.Item("a", "A", "s3cret")],
                                  secret_name="app").decode()
        assert "kind: Secret" in out and 'name: "app"' in out
        assert f"  A: {base64.b64encode(b's3cret').decode()}" in out

    def test_json_round_trip(self):
        revealed = [Revealed(entry=EntryMeta(name="db", kind="password", service="pg", tags=("t",),
                                             fields={"host": "h"}, secret_fields=["pw"],
                                             has_value=True, expires=2e9),
                             value="v", secret_fields={"pw": "p"}, notes="n")]
        drafts = formats.import_json(formats.export_json(revealed).decode())
        assert drafts[0].name == "db"
        f = drafts[0].fields
        assert (f["kind"], f["service"], f["tags"], f["value"], f["notes"], f["expires"]) == (
            "password", "pg", ["t"], "v", "n", 2e9)
        assert {(x.name, x.value, x.secret) for x in f["fields"]} == {("host", "h", False),
                                                                     ("pw", "p", True)}
        with pytest.raises(BadRequest):
            formats.import_json('{"format": "other"}')

    def test_import_env_with_json_objects(self):
        env = {"PLATFORM_CRED_GITHUB": '{"username": "bob", "token": "t0k"}',
               "PLATFORM_CRED_PLAIN": "v", "PLATFORM_CRED_EMPTY": "", "OTHER": "x"}
        drafts = {d.name: d.fields for d in formats.import_env(env, "PLATFORM_CRED_", "ci")}
        assert set(drafts) == {"ci/github", "ci/plain"}
        assert drafts["ci/plain"] == {"value": "v"}
        assert {(x.name, x.value, x.secret) for x in drafts["ci/github"]["fields"]} == {
            ("username", "bob", False), ("token", "t0k", True)}
        with pytest.raises(BadRequest):
            formats.import_env(env, "")

    def test_import_aws_and_dotenv(self):
        text = ("[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\n"
                "[prod]\naws_access_key_id=AKIA2\naws_secret_access_key=s2\nregion=eu\n")
        drafts = {d.name: d.fields for d in formats.import_aws(text)}
        assert set(drafts) == {"aws/default", "aws/prod"}
        assert {(x.name, x.secret) for x in drafts["aws/prod"]["fields"]} == {
            ("aws_access_key_id", True), ("aws_secret_access_key", True), ("region", False)}
        drafts, skipped = formats.import_dotenv("API_KEY=k\nREF=credd://x\nEMPTY=\nlow=1\n"
                                                "API_KEY=k2\n", into="app")
        assert drafts == [formats.Draft("app/API_KEY", {"value": "k2"}),
                          formats.Draft("app/EMPTY", {"value": ""}),
                          formats.Draft("app/low", {"value": "1"})]
        assert [(s.what, "reference" in s.why or "last value" in s.why) for s in skipped] == [
            ("REF", True), ("API_KEY", True)]


class TestRedact:
    def test_encoded_forms_catch_embedded_encodings(self):
        secret = "p@ss w/rd+42!"
        masker = redactor([secret], deep=True)
        for embedded in (b"user:" + secret.encode(), b"ab" + secret.encode() + b"cd",
                         secret.encode() + b"tail", b"x" + secret.encode()):
            for enc in (base64.b64encode, base64.urlsafe_b64encode):
                text = b"Authorization: Basic " + enc(embedded) + b" end"
                masked = masker.mask(text)
                assert REPLACEMENT in masked, embedded
                assert enc(secret.encode()).rstrip(b"=")[2:-2] not in masked
        for text in (quote(secret, safe=""), quote_plus(secret), quote(secret), secret):
            assert masker.mask(f"url?x={text}&y".encode()) == f"url?x={R}&y".encode()
        assert all(len(f) >= 8 for f in encoded_forms(secret, deep=True))
        shallow = redactor([secret])
        # 13 bytes: the last character carries 2 bits of the value and 4 of what follows
        # (nothing: zeros); it stays, so base64 of the value with more after it is caught too
        assert shallow.mask(base64.b64encode(secret.encode())) == REPLACEMENT + b"Q=="
        assert shallow.mask(base64.b64encode(secret.encode() + b"\n")).startswith(REPLACEMENT)
        assert REPLACEMENT not in shallow.mask(base64.b64encode(b"user:" + secret.encode()))

    def test_logging_filter(self, caplog):
        log = logging.getLogger("credd-test-redact")
        log.addFilter(RedactingFilter(["tok-123456789"]))
        with caplog.at_level(logging.INFO, logger="credd-test-redact"):
            log.info("token is %s", "tok-123456789")
            try:
                raise ValueError("bad tok-123456789")
            except ValueError:
                log.exception("failed")
        text = caplog.text
        assert "tok-123456789" not in text
        assert text.count(R) >= 2 and "ValueError" in text


class TestResolve:
    def test_precedence_without_agent(self, tmp_path, monkeypatch):
        cred = tmp_path / "credentials"
        cred.write_text("[default]\naws_access_key_id = FROMFILE\n")
        kwargs = dict(env_var="AWS_ACCESS_KEY_ID", default_file=str(cred),
                      default_key="default.aws_access_key_id")
        assert resolve("aws/default/aws_access_key_id", **kwargs) == "FROMFILE"
        f = tmp_path / "key"
        f.write_text("FROM_VAR_FILE\n")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID_FILE", str(f))
        assert resolve("aws/default/aws_access_key_id", **kwargs) == "FROM_VAR_FILE"
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "FROM_ENV")
        assert resolve("aws/default/aws_access_key_id", **kwargs) == "FROM_ENV"
        monkeypatch.setenv("GITHUB_TOKEN", "derived")
        assert resolve("credd://github/token") == "derived"

    def test_no_agent_no_file_raises_the_agent_error(self, tmp_path):
        with pytest.raises(AgentUnavailable):
            resolve("nothing/here")
        with pytest.raises(AgentUnavailable):
            resolve("nothing/here", default_file=str(tmp_path / "missing"))


def test_write_private(tmp_path):
    (tmp_path / "w").mkdir()
    target = tmp_path / "w" / "out"
    write_private(str(target), b"one")
    assert target.read_bytes() == b"one" and (target.stat().st_mode & 0o777) == 0o600
    os.chmod(target, 0o644)
    with pytest.raises(InsecurePath):
        write_private(str(target), b"two")
    assert target.read_bytes() == b"one"
    write_private(str(target), b"two", force=True)
    assert target.read_bytes() == b"two" and (target.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path / "w") == ["out"]  # no temporary left behind
