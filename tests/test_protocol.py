"""The wire contract: round trips, bytes written by older peers, strictness, and its
documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from credd import protocol as p
from credd.protocol import ErrorCode

DOC = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()

SAMPLES: list[p._Message] = [
    p.Hello(protocol=1, client="t"), p.Status(), p.Init(passphrase="pw", kdf_memory_kib=19456),
    p.Unlock(passphrase="pw", idle_timeout=60.0), p.Unlock(key=b"\x00\xff"), p.Lock(),
    p.ChangePassphrase(old="a", new="b"), p.Get(name="db/prod", field="password"),
    p.GetMany(refs=["credd://a", "credd://b/user"]), p.Reveal(name="a", version=2),
    p.Describe(name="a"),
    p.Set(name="a", value="v", fields=[p.Field(name="user", value="u", secret=False)],
          tags=["x"], mode="create", merge=True, rotate_after=86400.0),
    p.Delete(name="a"), p.Undelete(name="a"), p.Purge(name="a"), p.Move(old="a", new="b"),
    p.List(prefix="db/", service="pg", kind="password", tag="prod", contains="x", due=True,
           cursor="db/a", limit=10),
    p.Trash(), p.History(name="a"), p.Restore(name="a", version=1), p.AddKeySlot(key=b"k"),
    p.AddKeySlot(key=b"k", label="ci", proof="pw"), p.RemoveKeySlot(),
    p.RemoveKeySlot(label="ci", proof="pw"), p.Slots(), p.Audit(limit=5), p.Check(),
    p.Rekey(), p.Rekey(proof="pw"), p.VerifyBackup(), p.RestoreBackup(passphrase="pw"),
    p.RestoreBackup(recovery_key="r"), p.Subscribe(), p.Stop(),
    p.TokenCreate(mount="team", paths=["prod/*"], ttl=60.0, read_only=True, uses=3, wrap=30.0),
    p.TokenCreate(mount="team", policy="ops"), p.TokenList(mount="team"),
    p.TokenRevoke(mount="team", accessor="acc"), p.TokenRevoke(accessor="acc"),
    p.GrantCreate(names=["stripe/*"], mode="use", ttl=60.0, label="ci", uses=3, inject=True,
                  commands=["/usr/bin/git push **"], confirm=True, uid=65534),
    p.GrantList(all=True), p.GrantRevoke(id="g_abcdefghij"),
    p.GrantAnswer(request="r_abcdefghij", approve=True), p.SessionOpen(grant="g_abcdefghij"),
    p.SessionClose(session="s_abcdefghij"),
    p.Audit(limit=5, name="github", grant="g1", program="credd", since=1.5, op="get",
            outcome="ok"),
    p.AuditWho(name="github", since=2.0), p.AuditVerify(),
    p.Due(within=86400.0, unused=0.0, values=False, now=1.0), p.Due(),
    p.Fingerprint(name="a", field="f"), p.Inspect(name="a"), p.Policy(),
    p.Rotate(name="a", value="v"), p.RotateFinish(name="a"), p.RotateAbandon(name="a"),
    p.GetPending(name="a"),
    p.RecordVerification(name="a", outcome="failed", exit_status=22, seconds=0.5),
    p.Incident(name="a", since=1.0), p.Incident(name="a"),
    p.Migrate(src="local/", dst="team/moved/", cursor="local/a", limit=50, dry_run=True,
              overwrite=True, delete_source=True),
    p.Run(argv=["make", "deploy"], env={"TERM": "xterm"}, secrets={"T": "credd://t"},
          cwd="/src", tty=True, rows=24, cols=80, umask=0o027),
    p.Inject(template="key={{ credd://a/b }}\n"),
]
GRANT = p.Grant(id="g_abcdefghij", names=("stripe/*",), mode="read", created=1.0, expires=2.0,
                uses=3, used=1, commands=("/bin/true",), confirm=True, inject=True, uid=65534,
                parent="g_bcdefghijk", revoked=1.5, created_by="credd (pid 1)", socket="/tmp/s")
ACCESS = p.AccessRequest(id="r_abcdefghij", grant="g_abcdefghij", op="get", names=("a",),
                         program="python3", pid=9, time=1.0, expires=26.0)
REPLIES: list[p._Message] = [
    p.Welcome(protocol=1, version="0.1.0", pid=1, capabilities=["subscribe"]),
    p.StatusReply(state="unlocked", vault="/v", socket="/s", pid=1, version="0.1.0", entries=3,
                  idle_left=1.5, lifetime_left=2.5),
    p.StatusReply(state="locked", vault="/v", socket="/s", pid=1, version="0.1.0",
                  mounts=[p.MountInfo(name="team", backend="openbao", location="http://b/x",
                                      state="unreachable", message="m", warnings=["w"],
                                      read_only=True)],
                  config_error="config.toml: line 3"),
    p.Ok(), p.RecoveryKey(recovery_key="r"), p.Secret(name="a", value="v", field="f"),
    p.Secrets(values={"credd://a": "v"}),
    p.Revealed(entry=p.EntryMeta(name="a", secret_fields=("pin",)), value="v",
               secret_fields={"pin": "1"}, notes="n"),
    p.EntryReply(entry=p.EntryMeta(name="a", tags=("t",), fields={"user": "u"}, expires=5.0)),
    p.Entries(entries=[p.EntryMeta(name="a"), p.EntryMeta(name="run/a", mount="run")],
              next="a", total=9),
    p.HistoryReply(name="a", current=2, versions=[p.VersionInfo(version=1, updated=1.0,
                                                                 replaced=2.0)]),
    p.AuditLog(records=[p.AuditRecord(time=1.0, op="get", outcome="ok", name_hmac="hmac-sha256:0",
                                      pid=3, exe="/bin/x", mount="team"),
                        p.AuditRecord(time=2.0, op="get", outcome="ok", uid=1000, program="git",
                                      grant="g1", session="s1", mount="bao", form="base64",
                                      seq=7, prev="ab" * 32)]),
    p.AuditReaders(name_hmac="hmac-sha256:0",
                   readers=[p.Reader(program="credd get", count=2, first=1.0, last=2.0,
                                     grant="g1")]),
    p.AuditReport(ok=False, records=9, files=["audit.jsonl.1", "audit.jsonl"], first_seq=1,
                  head_seq=9, anchored_seq=8, anchored_at=5.0, unchained=2,
                  problem="edited", file="audit.jsonl", line=3),
    p.Entries(entries=[p.EntryMeta(name="a", last_used=3.0)]),
    p.CheckReport(checked=3, problems=["x"]), p.Ready(),
    p.BackupReport(vault_id="ab", generation=4, format=4, entries=2, versions=1,
                   problems=["x"], replaced="/v.replaced-1"),
    p.SlotList(slots=[p.SlotInfo(label="passphrase", kind="passphrase", kdf="argon2id",
                                 memory_kib=65536, iterations=3, lanes=4, created=1.0, used=2.0),
                      p.SlotInfo(label="ci", kind="key", problem="changed outside credd")],
               problems=["key slot 'ci': changed outside credd"]),
    p.StatusReply(state="unlocked", vault="/v", socket="/s", pid=1, version="0.1.0",
                  slots={"passphrase": 1, "recovery": 1, "key": 2}),
    p.TokenCreated(token="s.tok", wrapped=True,
                   info=p.TokenInfo(mount="team", accessor="acc", policies=("credd-1",),
                                    created=1.0, expires=2.0, uses_left=3, paths=("prod/*",),
                                    read_only=True)),
    p.Tokens(tokens=[p.TokenInfo(mount="team", accessor="acc")]),
    p.GrantReply(grant=GRANT), p.GrantsReply(grants=[GRANT], pending=[ACCESS]),
    p.SessionReply(session="s_abcdefghij", grant=GRANT),
    p.DueReport(entries=[p.DueEntry(name="a", kind="password", reasons=[
        p.DueReason(reason="rotation_due", when=1.0, period=2.0),
        p.DueReason(reason="duplicate", field="pin", names=["b", "c/key"]),
        p.DueReason(reason="short", length=5), p.DueReason(reason="unused", note="changed")])],
                now=3.0, checked=4, values=5, unread=["team"], config_error="x"),
    p.FingerprintReply(name="a", field="f", fingerprint="fp:0000-0000"),
    p.Inspection(entry=p.EntryMeta(name="a", value_changed=1.0, pending=2.0),
                 fingerprint="fp:0000-0000", field_fingerprints={"pin": "fp:1111-1111"},
                 rotation=3.0, reasons=[p.DueReason(reason="pending", when=2.0)],
                 verification=p.Verification(time=1.0, outcome="ok", seconds=0.1)),
    p.PolicyReply(rotation={"password": 1.0}, config_error=""),
    p.IncidentReport(entry=p.EntryMeta(name="a", compromised=2.0), since=1.0,
                     readers=[p.Reader(program="credd get", count=2, first=1.0, last=2.0,
                                       grant="g1")],
                     shared=[p.DueReason(reason="duplicate", names=["b"])], unread=["team"]),
    p.Migrated(items=[p.MigrateItem(name="local/a", to="team/moved/a", outcome="conflict",
                                    reason="r", deleted=True)],
               next="local/a", remaining=3, stopped="s", versions_left=True),
    p.Ready(), p.RunExit(code=130, signal=2),
    p.Error(code="not_found", message="m", names=["credd://x"], retry_after=None),
]
EVENTS: list[p._Message] = [p.Locked(reason="idle"), p.Unlocked(),
                            p.EntryChanged(name="a", action="move", new_name="b"),
                            p.GrantChanged(grant="g_abcdefghij", action="revoke"),
                            p.AccessRequested(request=ACCESS)]
RUN_INPUT: list[p._Message] = [p.Resize(rows=40, cols=132), p.Signal(signal=15)]


class TestRoundTrip:
    @pytest.mark.parametrize("message", SAMPLES, ids=lambda m: p.tag_of(type(m)))
    def test_requests(self, message):
        frame = p.encode(message)
        assert p.body_length(frame[:4]) == len(frame) - 4
        assert p.decode_request(frame[4:]) == message

    @pytest.mark.parametrize("message", REPLIES, ids=lambda m: p.tag_of(type(m)))
    def test_responses(self, message):
        assert p.decode_response(p.encode(message)[4:]) == message

    @pytest.mark.parametrize("message", EVENTS, ids=lambda m: p.tag_of(type(m)))
    def test_events(self, message):
        assert p.decode_event(p.encode(message)[4:]) == message

    @pytest.mark.parametrize("message", RUN_INPUT, ids=lambda m: p.tag_of(type(m)))
    def test_run_input(self, message):
        assert p.decode_run_input(p.encode(message)[4:]) == message

    def test_samples_cover_every_type(self):
        assert {p.tag_of(type(m)) for m in SAMPLES} == set(p.REQUEST_TYPES)
        assert {p.tag_of(type(m)) for m in REPLIES} == set(p.RESPONSE_TYPES)
        assert {p.tag_of(type(m)) for m in EVENTS} == set(p.EVENT_TYPES)
        assert {p.tag_of(type(m)) for m in RUN_INPUT} == set(p.RUN_INPUT_TYPES)

    def test_run_input_is_no_request(self):
        """`resize` and `signal` mean something only inside a run: as requests, unknown."""
        for message in RUN_INPUT:
            with pytest.raises(p.FrameError):
                p.decode_request(p.encode(message)[4:])


class TestOldBytes:
    """Bytes as a protocol-1 peer wrote them before later fields existed must keep decoding."""

    def test_slot_requests_without_a_proof(self):
        """An older client's slot requests still decode: the agent then refuses them for
        want of a proof (bad_request), it does not fail to read them."""
        assert p.decode_request(b"\x81\xa4type\xa5rekey") == p.Rekey(proof=None)
        old = b"\x82\xa4type\xafremove_key_slot\xa5label\xa2ci"
        assert p.decode_request(old) == p.RemoveKeySlot(label="ci", proof=None)
        assert p.encode(p.AddKeySlot(key=b"k"))[4:] == (
            b"\x82\xa4type\xacadd_key_slot\xa3key\xc4\x01k")

    def test_status_reply_without_later_fields(self):
        old = (b"\x86\xa4type\xa6status\xa5state\xa6locked\xa5vault\xa2/v\xa6socket\xa2/s"
               b"\xa3pid\x07\xa7version\xa50.1.0")
        reply = p.decode_response(old)
        assert isinstance(reply, p.StatusReply) and reply.state == "locked" and reply.pid == 7
        assert reply.entries is None and reply.retry_after == 0.0 and reply.capped is False
        assert reply.mounts == [] and reply.config_error == "" and reply.damage == []

    def test_init_and_change_passphrase_without_allow_short(self):
        init = p.decode_request(b"\x82\xa4type\xa4init\xaapassphrase\xa8long one")
        assert init == p.Init(passphrase="long one") and init.allow_short is False
        change = p.decode_request(b"\x83\xa4type\xb1change_passphrase\xa3old\xa1a\xa3new\xa1b")
        assert change == p.ChangePassphrase(old="a", new="b") and change.allow_short is False

    def test_unlock_without_wait(self):
        old = (b"\x83\xa4type\xa6unlock\xaapassphrase\xa1x"
               b"\xacidle_timeout\xcb@N\x00\x00\x00\x00\x00\x00")
        request = p.decode_request(old)
        assert request == p.Unlock(passphrase="x", idle_timeout=60.0) and request.wait is False

    def test_get_without_field(self):
        assert p.decode_request(b"\x82\xa4type\xa3get\xa4name\xa6github") == p.Get(name="github")

    def test_audit_without_filters(self):
        assert p.decode_request(b"\x82\xa4type\xa5audit\xa5limit\x05") == p.Audit(limit=5)

    def test_audit_record_before_the_chain(self):
        old = (b"\x82\xa4type\xa9audit_log\xa7records\x91\x84\xa4time\xcb?\xf0\x00\x00"
               b"\x00\x00\x00\x00\xa2op\xa3get\xa7outcome\xa2ok\xa3pid\x03")
        record = p.decode_response(old).records[0]
        assert (record.seq, record.prev, record.program, record.grant) == (0, "", "", "")

    def test_entries_without_paging_fields(self):
        reply = p.decode_response(b"\x82\xa4type\xa7entries\xa7entries\x91\x81\xa4name\xa1a")
        assert reply == p.Entries(entries=[p.EntryMeta(name="a")]) and reply.next is None
        assert reply.entries[0].mount == ""
        assert reply.entries[0].last_used is None


class TestStrict:
    @pytest.mark.parametrize("body", [
        b"\xc1",                                                   # invalid opcode
        b"\x81\xa4type\xa4nope",                                   # unknown tag
        b"\x82\xa4type\xa6status\xa3foo\x01",                      # unknown field
        b"\x82\xa4type\xa3get\xa4name\x01",                        # wrong type
        b"\x82\xa4type\xa3get\xa4name\xa2\xff\xfe",                # invalid UTF-8
        b"\x83\xa4type\xa3get\xa4name\xa1a\xa4name\xa1b",          # duplicate key
        b"\x82\xa4type\xa3get\xa4name\xd9\x01a",                   # padded str8 encoding
        b"\x81\xa4type\xa6status\x00",                             # trailing byte
        b"\x91" * 100_000 + b"\xc0",                               # deep nesting
        b"",
    ])
    def test_rejected(self, body):
        with pytest.raises(p.FrameError):
            p.decode_request(body)

    @pytest.mark.parametrize("length", [0, p.MAX_FRAME + 1, 2**32 - 1])
    def test_header_limits(self, length):
        with pytest.raises(p.FrameError):
            p.body_length(p.HEADER.pack(length))

    def test_cap_itself_is_allowed(self):
        assert p.body_length(p.HEADER.pack(p.MAX_FRAME)) == p.MAX_FRAME

    def test_secret_fields_redacted_in_repr(self):
        text = repr(p.Unlock(passphrase="hunter2")) + repr(p.Secret(name="a", value="hunter2"))
        text += repr(p.Set(name="a", value="hunter2")) + repr(p.Field(name="f", value="hunter2"))
        text += repr(p.RestoreBackup(passphrase="hunter2"))
        assert "hunter2" not in text


def _section(tag: str, part: str) -> str:
    """The doc section under a heading that names `tag`, within the part (## heading)."""
    part_match = re.search(rf"^## {part}\b.*?(?=^## |\Z)", DOC, re.M | re.S)
    assert part_match, f"docs/protocol.md has no '## {part}' part"
    match = re.search(rf"^###+ .*`{re.escape(tag)}`.*?(?=^###? |\Z)", part_match.group(0),
                      re.M | re.S)
    assert match, f"docs/protocol.md does not document {part.lower()} `{tag}`"
    return match.group(0)


class TestDocumented:
    """docs/protocol.md alone must be enough to write a client: every message and field."""

    @pytest.mark.parametrize("part, types", [("Requests", p.REQUEST_TYPES),
                                             ("Responses", p.RESPONSE_TYPES),
                                             ("Events", p.EVENT_TYPES),
                                             ("Run input", p.RUN_INPUT_TYPES)])
    def test_every_message_and_field(self, part, types):
        for tag, cls in types.items():
            section = _section(tag, part)
            for field in cls.__struct_fields__:
                assert f"`{field}`" in section, f"{part} `{tag}`: field `{field}` undocumented"

    def test_records(self):
        for cls in (p.EntryMeta, p.Field, p.VersionInfo, p.AuditRecord, p.MountInfo,
                    p.TokenInfo, p.SlotInfo, p.Reader, p.MigrateItem, p.DueReason,
                    p.DueEntry, p.Verification, p.Grant, p.AccessRequest):
            section = _section(cls.__name__, "Records")
            for field in cls.__struct_fields__:
                assert f"`{field}`" in section, f"record {cls.__name__}: `{field}` undocumented"

    def test_each_request_documents_the_reply_it_names(self):
        requests = re.search(r"^## Requests\b.*?(?=^## |\Z)", DOC, re.M | re.S).group(0)
        for tag, cls in p.REQUEST_TYPES.items():
            section = re.search(rf"^### `{tag}`\n(.*?)(?=^### |\Z)", requests, re.M | re.S)
            reply = re.search(r"Reply:\s+`(\w+)`", section.group(1))
            assert reply and reply.group(1) == p.tag_of(p.REPLY[cls]), f"request `{tag}`"

    def test_error_codes(self):
        section = re.search(r"^## Errors\b.*?(?=^## |\Z)", DOC, re.M | re.S).group(0)
        for code in ErrorCode.__args__:
            assert f"`{code}`" in section, f"error code `{code}` undocumented"

    def test_constants(self):
        assert f"{p.MAX_FRAME}" in DOC and f"protocol version is {p.PROTOCOL_VERSION}" in DOC
