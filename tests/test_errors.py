"""The exception tree: codes, exit codes, and the round trip through the wire."""

import pytest

from credd import errors
from credd.protocol import ErrorCode


def test_every_wire_code_is_a_protocol_error_code():
    assert set(errors.WIRE_CODES) == set(ErrorCode.__args__)


@pytest.mark.parametrize("cls, exit_code", [
    (errors.CreddError, 1), (errors.BadRequest, 2), (errors.LockedError, 3),
    (errors.AgentUnavailable, 4), (errors.NotFound, 5), (errors.NoVault, 5),
    (errors.BadPassphrase, 6), (errors.Denied, 7), (errors.InsecurePath, 7),
    (errors.IntegrityError, 8), (errors.Exists, 1), (errors.RateLimited, 1),
    (errors.CommandNotFound, 127), (errors.CommandNotExecutable, 126),
])
def test_exit_codes_match_the_documented_table(cls, exit_code):
    assert cls.exit_code == exit_code


def test_from_code_rebuilds_the_class_and_details():
    exc = errors.from_code("not_found", "missing refs", names=["a", "b"])
    assert type(exc) is errors.NotFound
    assert exc.names == ["a", "b"] and str(exc) == "missing refs"
    limited = errors.from_code("rate_limited", "wait", retry_after=2.5)
    assert isinstance(limited, errors.RateLimited) and limited.retry_after == 2.5


def test_unknown_code_becomes_internal():
    assert type(errors.from_code("from_the_future", "x")) is errors.InternalError


def test_default_message_says_what_to_do_next():
    assert "credd unlock" in str(errors.LockedError())
    assert "credd init" in str(errors.NoVault())


def test_secret_fields_are_redacted_in_every_repr():
    from credd.protocol import Field, Set, Unlock

    secret = "s3cr3t-value"
    field = Field(name="token", value=secret, secret=True)
    for text in (repr(field), str(list(field.__rich_repr__())),
                 repr(Set(name="x", value=secret, notes=secret, fields=[field])),
                 repr(Unlock(passphrase=secret)),
                 str(list(Unlock(passphrase=secret).__rich_repr__()))):
        assert secret not in text
    plain = Field(name="user", value="alice", secret=False)
    assert "alice" in repr(plain) and ("value", "alice") in list(plain.__rich_repr__())
