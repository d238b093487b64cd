"""The client core without I/O: frames out of any split of the byte stream, replies matched
to requests in order and checked against the reply table, and when a connection stays usable.

Bytes come from `protocol.encode`, as the agent writes them; no socket is involved.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credd import errors
from credd import protocol as p
from credd.client_core import Core, entries_of
from credd.wire import FrameReader

BODIES = [b"\x80", b"x" * 70_000, b"y" * 5, b"z" * 300_000]


def frames_of(bodies: list[bytes]) -> bytes:
    return b"".join(len(b).to_bytes(4, "big") + b for b in bodies)


class TestFrameReader:
    @settings(max_examples=200, deadline=None)
    @given(cuts=st.lists(st.integers(0, len(frames_of(BODIES))), max_size=30))
    def test_any_split_of_the_stream_gives_the_same_bodies(self, cuts):
        stream, reader, out = frames_of(BODIES), FrameReader(), []
        edges = sorted({0, len(stream), *cuts})
        for start, end in itertools.pairwise(edges):
            reader.feed(stream[start:end])
            while (body := reader.next_body()) is not None:
                out.append(bytes(body))
        assert out == BODIES

    @pytest.mark.parametrize("length", [0, p.MAX_FRAME + 1, 2**32 - 1])
    def test_a_bad_length_is_refused_before_anything_is_allocated(self, length):
        reader = FrameReader()
        reader.feed(length.to_bytes(4, "big"))
        with pytest.raises(errors.ProtocolError, match="frame of"):
            reader.next_body()


def reply_bytes(*replies: p._Message) -> list[bytes]:
    return [p.encode(r)[4:] for r in replies]


class TestReplies:
    def test_pipelined_replies_are_matched_to_requests_in_order(self):
        core = Core()
        core.encode(p.Get(name="a"))
        core.encode(p.Status())
        secret, status = reply_bytes(
            p.Secret(name="a", value="v"),
            p.StatusReply(state="locked", vault="/v", socket="/s", pid=1, version="t"))
        assert core.take(secret, "reply").value == "v"
        assert core.take(status, "reply").state == "locked"
        assert core.reusable(KeyboardInterrupt())  # nothing left unread

    def test_a_reply_of_another_type_than_the_table_says_is_a_protocol_error(self):
        """The rekey bug: an `ok` was expected where the agent sends `recovery_key`.
        With the table, whatever a request names is what is accepted."""
        core = Core()
        core.encode(p.Rekey())
        assert core.take(reply_bytes(p.RecoveryKey(recovery_key="r"))[0], "reply") \
            .recovery_key == "r"
        core.encode(p.Rekey())
        with pytest.raises(errors.ProtocolError, match="answered 'rekey' with 'ok'") as info:
            core.take(reply_bytes(p.Ok())[0], "reply")
        assert not core.reusable(info.value)

    def test_an_error_reply_is_its_exception_and_the_connection_stays(self):
        core = Core()
        core.encode(p.GetMany(refs=["credd://a"]))
        body = reply_bytes(p.Error(code="not_found", message="1 of 1 missing",
                                   names=["credd://a"]))[0]
        with pytest.raises(errors.NotFound) as info:
            core.take(body, "reply")
        assert info.value.names == ["credd://a"] and info.value.next_step()
        assert core.reusable(info.value)

    def test_an_unread_reply_or_an_unreadable_one_ends_the_connection(self):
        core = Core()
        core.encode(p.Status())
        assert not core.reusable(KeyboardInterrupt())  # interrupted before its reply
        with pytest.raises(errors.ProtocolError, match="cannot read"):
            core.take(b"\xc1", "reply")
        assert not core.reusable(errors.ProtocolError())

    def test_an_oversized_request_is_refused_and_nothing_is_awaited(self):
        core = Core()
        with pytest.raises(errors.BadRequest, match="frame"):
            core.encode(p.Set(name="big", value="x" * p.MAX_FRAME))
        assert core.reusable(errors.BadRequest())

    def test_stop_ends_the_connection(self):
        core = Core()
        core.encode(p.Stop())
        core.take(reply_bytes(p.Ok())[0], "reply")
        assert core.ended

    def test_a_page_keeps_its_entries_encoded_until_asked(self):
        core = Core()
        core.encode(p.List())
        entries = [p.EntryMeta(name=f"e{i}") for i in range(3)]
        page = core.take(reply_bytes(p.Entries(entries=entries, next="e2"))[0], "page")
        assert page.next == "e2" and entries_of(page) == entries

    def test_events_come_without_a_request(self):
        core = Core()
        assert core.take(reply_bytes(p.Locked(reason="idle"))[0], "event") == \
            p.Locked(reason="idle")
        with pytest.raises(errors.LockedError):
            core.take(reply_bytes(p.Error(code="locked", message="m"))[0], "event")
