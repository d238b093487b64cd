"""Certificates: the expiry (and subject, issuer) read by the agent when one is stored."""

from __future__ import annotations

import json

from credd.daemon import certs
from credd.protocol import Field, Set
from tests.lifecycle.conftest import at, certificate


def test_a_self_signed_certificate_s_expiry_is_read_on_set(client, run_credd):
    pem, _ = certificate("example.test", at(2031, 5, 17))
    entry = client.set("tls/example", kind="certificate", value=pem)
    assert entry.expires == at(2031, 5, 17).timestamp()
    assert entry.fields == {"cert_subject": "CN=example.test", "cert_issuer": "CN=example.test"}
    shown = run_credd("show", "tls/example").stdout
    assert "field cert_subject: CN=example.test" in shown and "expires:" in shown
    assert "2031-05-17" in shown


def test_a_chain_shows_the_earliest_expiry(client):
    ca, ca_id = certificate("Test CA", at(2029, 1, 1))
    leaf, _ = certificate("leaf.test", at(2030, 1, 1), issuer=ca_id)
    entry = client.set("tls/chain", kind="certificate", value=leaf + ca)
    assert entry.expires == at(2029, 1, 1).timestamp()  # the CA, not the leaf
    assert entry.fields["cert_subject"] == "CN=Test CA"
    later_ca, later_id = certificate("Later CA", at(2035, 1, 1))
    leaf2, _ = certificate("leaf2.test", at(2030, 6, 1), issuer=later_id)
    entry = client.set("tls/chain", value=leaf2 + later_ca, merge=True)
    assert entry.expires == at(2030, 6, 1).timestamp()
    assert entry.fields == {"cert_subject": "CN=leaf2.test", "cert_issuer": "CN=Later CA"}


def test_any_field_holding_a_certificate_counts(client):
    pem, _ = certificate("api.test", at(2028, 3, 3))
    entry = client.set("svc", kind="secret", value="a key",
                       fields=[Field(name="cert", value=pem, secret=False)])
    assert entry.expires == at(2028, 3, 3).timestamp()
    assert entry.fields["cert_issuer"] == "CN=api.test"
    edited = client.set("svc", tags=["x"], merge=True)  # no certificate in the edit
    assert edited.expires == entry.expires and edited.fields == entry.fields


def test_an_explicit_expiry_wins_and_garbage_is_stored_as_given(client):
    pem, _ = certificate("x.test", at(2031, 1, 1))
    entry = client.set("explicit", value=pem, expires=at(2030, 1, 1).timestamp())
    assert entry.expires == at(2030, 1, 1).timestamp()
    broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    entry = client.set("broken", kind="certificate", value=broken)
    assert entry.expires is None and client.get("broken") == broken


def test_a_rotation_to_a_new_certificate_moves_the_expiry(client, run_credd):
    old, _ = certificate("r.test", at(2027, 1, 1))
    new, _ = certificate("r.test", at(2028, 1, 1))
    client.set("tls/r", kind="certificate", value=old)
    client.rotate("tls/r", new)
    assert client.describe("tls/r").expires == at(2027, 1, 1).timestamp()  # still the old
    assert client.finish_rotation("tls/r").expires == at(2028, 1, 1).timestamp()


def test_expiring_certificates_are_due_but_shared_ones_are_no_reuse(client, run_credd):
    ca, _ = certificate("Shared CA", at(2040, 1, 1))
    client.set("a", kind="certificate", value=ca)
    client.set("b", kind="certificate", value=ca)
    report = client.due(now=at(2039, 12, 25).timestamp(), unused=0.0)
    assert {e.name: [r.reason for r in e.reasons] for e in report.entries} == {
        "a": ["expiring"], "b": ["expiring"]}
    done = run_credd("due", "--json", "--unused", "never")
    assert done.returncode == 0 and json.loads(done.stdout)["entries"] == []


def test_annotated_leaves_other_requests_alone():
    request = Set(name="x", value="plain", fields=[Field(name="f", value="v")])
    assert certs.annotated(request) is request
