"""The stdlib fast path speaks exactly credd.protocol: bytes out, readings in.

`credd get` and `credd status` skip msgspec and encode their frames by hand
(credd/cli/fast.py). These tests hold the two encoders to one contract:
every frame the fast path writes equals `protocol.encode(...)` byte for
byte, and every reply it parses reads the same as through msgspec.
"""

from __future__ import annotations

import json
import socket

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credd import protocol, wire
from credd.cli import fast, output
from credd.errors import BadPassphrase, LockedError, NotFound, NoVault, ProtocolError

names = st.text(min_size=1, max_size=300)
fields = st.none() | st.text(min_size=1, max_size=80)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestFramesOut:
    @FAST
    @given(name=names, field=fields)
    def test_get_frames_equal_protocol_encode(self, name, field):
        assert fast.frame("get", name=name, field=field) == \
            protocol.encode(protocol.Get(name=name, field=field))

    @pytest.mark.parametrize("length", [0, 1, 31, 32, 255, 256, 65535, 65536, 200_000])
    def test_every_string_header_size(self, length):
        name = "é" * (length // 2) + "x" * (length % 2)  # multi-byte: bytes, not chars, count
        for field in (None, name[:40] or "f"):
            assert fast.frame("get", name=name or "n", field=field) == \
                protocol.encode(protocol.Get(name=name or "n", field=field))

    def test_unicode_names(self):
        for name in ("ключ", "鍵/トークン", "emoji-🔑", "rtl-\u202eevil", "nul\x00in", "a/b/c"):
            assert fast.frame("get", name=name) == protocol.encode(protocol.Get(name=name))

    def test_hello_and_status(self):
        assert fast.hello_frame() == protocol.encode(
            protocol.Hello(protocol=protocol.PROTOCOL_VERSION, client=fast.CLIENT_NAME))
        assert fast.frame("status") == protocol.encode(protocol.Status())

    @FAST
    @given(refs=st.lists(st.text(max_size=60), max_size=40))
    def test_get_many_frames_equal_protocol_encode(self, refs):
        assert fast.frame("get_many", refs=refs) == protocol.encode(protocol.GetMany(refs=refs))

    @FAST
    @given(argv=st.lists(st.text(max_size=30), min_size=1, max_size=20),
           env=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=20),
           tty=st.booleans(), rows=st.integers(0, 70000), umask=st.integers(0, 0o777))
    def test_run_frames_equal_protocol_encode(self, argv, env, tty, rows, umask):
        """What `credd run` sends under a `use` grant (credd/cli/agent_run.py): defaults
        left out as msgspec leaves them out."""
        secrets = {k.upper() or "V": f"credd://{v}" for k, v in list(env.items())[:5]}
        fields = dict(argv=argv, env=env, secrets=secrets, cwd="/w", tty=tty, rows=rows,
                      cols=rows // 2, umask=umask)
        defaults = {"env": {}, "secrets": {}, "tty": False, "rows": 0, "cols": 0,
                    "umask": 0o022}
        sent = {k: None if defaults.get(k, object()) == v else v for k, v in fields.items()}
        assert fast.frame("run", **sent) == protocol.encode(protocol.Run(**fields))

    @pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536])
    def test_every_array_header_size(self, count):
        refs = [f"credd://e{i % 10}" for i in range(count)]
        assert fast.frame("get_many", refs=refs) == protocol.encode(protocol.GetMany(refs=refs))

    def test_oversized_request_is_refused_before_sending(self):
        with pytest.raises(ProtocolError):
            fast.frame("get", name="x" * protocol.MAX_FRAME)

    def test_constants_match_the_protocol(self):
        assert wire.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
        assert wire.MAX_FRAME == protocol.MAX_FRAME


# Every MessagePack value msgspec can write for a reply: the reader must agree on all of them.
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=70) | st.binary(max_size=70),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)

entry_meta = st.builds(protocol.EntryMeta, name=names)
status_replies = st.builds(
    protocol.StatusReply, state=st.sampled_from(["no_vault", "locked", "unlocked"]),
    vault=st.text(max_size=60), socket=st.text(max_size=60), pid=st.integers(1, 2**22),
    version=st.text(max_size=10), entries=st.none() | st.integers(0, 10**6),
    idle_timeout=st.floats(0, 1e6), max_lifetime=st.floats(0, 1e6),
    idle_left=st.none() | st.floats(0, 1e6), lifetime_left=st.none() | st.floats(0, 1e6),
    retry_after=st.floats(0, 100),
    mounts=st.lists(st.builds(
        protocol.MountInfo, name=st.text(max_size=10), backend=st.sampled_from(["env", "files"]),
        location=st.text(max_size=20), state=st.sampled_from(["ok", "error"]),
        message=st.text(max_size=20), warnings=st.lists(st.text(max_size=20), max_size=2),
        read_only=st.booleans()), max_size=2),
    config_error=st.text(max_size=20))
replies = st.one_of(
    st.builds(protocol.Secret, name=names, value=st.text(max_size=2000), field=fields),
    st.builds(protocol.Welcome, protocol=st.integers(0, 2**31), version=st.text(max_size=20),
              pid=st.integers(1, 2**22), capabilities=st.lists(st.text(max_size=10))),
    st.builds(protocol.Error, code=st.sampled_from(protocol.ErrorCode.__args__),
              message=st.text(max_size=200), names=st.lists(names, max_size=3),
              retry_after=st.none() | st.floats(0, 1e6)),
    status_replies,
    st.builds(protocol.Entries, entries=st.lists(entry_meta, max_size=3)),
)


class TestRepliesIn:
    @FAST
    @given(value=values)
    def test_reader_agrees_with_msgspec_on_any_value(self, value):
        body = msgspec.msgpack.encode(value)
        assert fast.unpack(body) == msgspec.msgpack.decode(body)

    @FAST
    @given(reply=replies)
    def test_replies_read_the_same_as_through_msgspec(self, reply):
        body = protocol.encode(reply)[4:]
        assert protocol.decode_response(body) == reply
        assert fast.unpack(body) == msgspec.to_builtins(reply)

    @pytest.mark.parametrize("body", [
        b"\x82\xa4type",                    # truncated map
        b"\xa1x\x00",                       # trailing byte
        b"\xa2\xff\xfe",                    # invalid UTF-8
        b"\xd4\x01\x00",                    # ext type
        b"\x91" * 40 + b"\xc0",             # nested too deep
        b"\x81\x01\x02",                    # non-string key
        b"",
    ])
    def test_malformed_replies_are_protocol_errors(self, body):
        with pytest.raises(ProtocolError):
            fast.unpack(body)

    def test_status_fields_and_defaults_are_the_protocols(self):
        struct_fields = protocol.StatusReply.__struct_fields__
        assert tuple(fast.STATUS_FIELDS) == struct_fields
        given = protocol.StatusReply.__struct_defaults__
        defaults = {name: getattr(d, "factory", lambda d=d: d)()  # [] defaults are factories
                    for name, d in zip(struct_fields[-len(given):], given)}
        assert {k: v for k, v in fast.STATUS_FIELDS.items() if k in defaults} == defaults

    def test_mount_fields_and_defaults_are_the_protocols(self):
        fields, given = protocol.MountInfo.__struct_fields__, protocol.MountInfo.__struct_defaults__
        assert tuple(fast.MOUNT_FIELDS) == fields
        defaults = {name: getattr(d, "factory", lambda d=d: d)()
                    for name, d in zip(fields[-len(given):], given)}
        assert {k: v for k, v in fast.MOUNT_FIELDS.items() if k in defaults} == defaults


def _serve(replies: list) -> tuple[socket.socket, socket.socket]:
    """A socket pair whose far end already holds these encoded replies."""
    near, far = socket.socketpair()
    far.sendall(b"".join(protocol.encode(r) for r in replies))
    return near, far


def _sent(far: socket.socket) -> list:
    far.settimeout(1)
    data = b""
    far.shutdown(socket.SHUT_WR)
    while chunk := far.recv(65536):
        data += chunk
    frames = []
    while data:
        n = int.from_bytes(data[:4], "big")
        frames.append(protocol.decode_request(data[4:4 + n]))
        data = data[4 + n:]
    return frames


WELCOME = protocol.Welcome(protocol=protocol.PROTOCOL_VERSION, version="t", pid=1)


class TestConversations:
    @FAST
    @given(reply=status_replies)
    def test_status_dict_equals_the_full_clients_view(self, reply):
        near, far = _serve([WELCOME, reply])
        with near, far:
            status = fast.status_dict(near)
            near.shutdown(socket.SHUT_WR)
            assert _sent(far) == [protocol.Hello(protocol=1, client=fast.CLIENT_NAME),
                                  protocol.Status()]
        assert status == output.as_data(reply)
        assert list(status) == list(output.as_data(reply))  # same key order in --json
        assert json.loads(fast.to_json(status)) == json.loads(
            msgspec.json.encode(output.as_data(reply)))

    def test_get_pipelines_hello_and_get(self):
        near, far = _serve([WELCOME, protocol.Secret(name="a", value="v")])
        with near, far:
            assert fast.get_value(near, "a") == "v"
            near.shutdown(socket.SHUT_WR)
            assert _sent(far) == [protocol.Hello(protocol=1, client=fast.CLIENT_NAME),
                                  protocol.Get(name="a")]

    def test_get_of_a_field_is_one_request_the_agent_resolves(self):
        near, far = _serve([WELCOME, protocol.Secret(name="a", field="b", value="v")])
        with near, far:
            assert fast.get_value(near, "a/b") == "v"
            near.shutdown(socket.SHUT_WR)
            assert _sent(far)[1:] == [protocol.Get(name="a/b")]

    @pytest.mark.parametrize("code,exc", [("not_found", NotFound), ("locked", LockedError),
                                          ("no_vault", NoVault),
                                          ("bad_passphrase", BadPassphrase)])
    def test_an_error_is_raised_as_it_came(self, code, exc):
        near, far = _serve([WELCOME, protocol.Error(code=code, message="m")])
        with near, far, pytest.raises(exc) as info:
            fast.get_value(near, "a/b")
        assert info.value.message == "m"

    def test_get_many_pipelines_hello_and_the_request(self):
        values = {"credd://a": "1", "credd://b/f": "2"}
        near, far = _serve([WELCOME, protocol.Secrets(values=values)])
        with near, far:
            assert fast.secrets_of(near, list(values)) == values
            near.shutdown(socket.SHUT_WR)
            assert _sent(far) == [protocol.Hello(protocol=1, client=fast.CLIENT_NAME),
                                  protocol.GetMany(refs=list(values))]

    def test_get_many_missing_refs_are_named(self):
        near, far = _serve([WELCOME, protocol.Error(code="not_found", message="2 of 2",
                                                    names=["credd://a", "credd://b"])])
        with near, far, pytest.raises(NotFound) as info:
            fast.secrets_of(near, ["credd://a", "credd://b"])
        assert info.value.names == ["credd://a", "credd://b"]

    def test_get_many_reply_of_the_wrong_shape_is_a_protocol_error(self):
        near, far = _serve([WELCOME, protocol.Secret(name="a", value="v")])
        with near, far, pytest.raises(ProtocolError):
            fast.secrets_of(near, ["credd://a"])

    def test_a_newer_agent_is_a_version_mismatch_with_a_hint(self):
        from credd.errors import VersionMismatch
        near, far = _serve([protocol.Welcome(protocol=99, version="9", pid=1),
                            protocol.Secret(name="a", value="v")])
        with near, far, pytest.raises(VersionMismatch, match="credd stop"):
            fast.get_value(near, "a")


class TestArguments:
    @pytest.mark.parametrize("argv,handled", [
        (["get", "x"], True), (["get", "x", "-n"], True), (["get", "-n", "x/y"], True),
        (["status"], True), (["status", "--json"], True),
        (["get"], False), (["get", "--help"], False), (["get", "-h", "x"], False),
        (["get", "x", "y"], False), (["get", "--", "-x"], False), (["get", "-n", "-n", "x"], False),
        (["status", "--help"], False), (["status", "-v"], False), ([], False), (["ls"], False),
    ])
    def test_only_the_plain_shapes_take_the_fast_path(self, argv, handled):
        assert (fast._parse(argv) is not None) == handled

    @FAST
    @given(st.text())
    def test_json_writer_round_trips(self, text):
        doc = {"s": text, "n": None, "t": True, "i": -3, "f": 1.5, "l": [text, 2]}
        assert json.loads(fast.to_json(doc)) == doc
