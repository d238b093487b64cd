"""Each request names its reply once (`Asks[...]` in credd/protocol.py); the agent's
handlers must declare that same reply, since clients reject any other."""

from __future__ import annotations

import typing

import pytest

from credd import protocol as p
from credd.daemon.dispatch import ROUTES


def test_every_request_names_one_reply_type():
    assert set(p.REPLY) == set(typing.get_args(p.Request))
    for request, reply in p.REPLY.items():
        assert reply in typing.get_args(p.Response) and reply is not p.Error, request


def test_every_request_has_a_route():
    assert set(ROUTES) == set(p.REPLY)


@pytest.mark.parametrize("request_type", list(p.REPLY), ids=p.tag_of)
def test_each_handler_declares_the_reply_its_request_names(request_type):
    """A request answered `ready` is answered by its handler with its last frame."""
    handler = ROUTES[request_type]
    declared = typing.get_type_hints(handler)["return"]  # a coroutine's: what it returns
    expected = p.LAST.get(request_type, p.REPLY[request_type])
    assert declared is expected, (
        f"{handler.__name__} returns {declared}, but {request_type.__name__} "
        f"asks for {expected.__name__}")


def test_requests_answered_ready_name_their_last_frame():
    for request, reply in p.REPLY.items():
        assert (reply is p.Ready) == (request in p.LAST), request
        if request in p.LAST:
            assert p.LAST[request] in typing.get_args(p.Response), request
