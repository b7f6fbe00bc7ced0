"""The broker script's SCRAM client (RFC 5802) and its ACL encoding, without a broker."""
from __future__ import annotations

import struct

import pytest

from atlas.infra.kafka.wire import AclBinding, KafkaWireError, scram

# RFC 7677, section 3: the SCRAM-SHA-256 exchange of user "user" with password "pencil".
NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _server(final: bytes = SERVER_FINAL):
    sent: list[bytes] = []

    def exchange(token: bytes) -> bytes:
        sent.append(token)
        return SERVER_FIRST if len(sent) == 1 else final

    return exchange, sent


def test_scram_sends_the_rfc_7677_proof_and_accepts_the_servers():
    exchange, sent = _server()
    scram(exchange, "user", "pencil", "SCRAM-SHA-256", nonce=NONCE)
    assert sent == [b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", CLIENT_FINAL]


def test_scram_refuses_a_server_that_does_not_know_the_password():
    exchange, _ = _server(final=b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    with pytest.raises(KafkaWireError, match="did not prove"):
        scram(exchange, "user", "pencil", "SCRAM-SHA-256", nonce=NONCE)


def test_scram_refuses_a_nonce_that_does_not_extend_the_clients():
    with pytest.raises(KafkaWireError, match="cannot take"):
        scram(lambda token: b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "user", "pencil", "SCRAM-SHA-256",
              nonce=NONCE)


def test_an_acl_binding_encodes_as_a_create_acls_v1_creation():
    encoded = AclBinding(2, "atlas.", True, "User:worker", 2).encode()
    assert encoded == (b"\x02" + struct.pack(">h", 6) + b"atlas." + b"\x04" + struct.pack(">h", 11) + b"User:worker"
                       + struct.pack(">h", 1) + b"*" + b"\x02\x03")
