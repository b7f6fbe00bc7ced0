"""Just enough of the Kafka wire protocol for the broker script: readiness, SASL/SCRAM sign-in, ACLs.

Standard library only, like the script: it runs before any virtualenv exists. Every request
here has a non-flexible version that Kafka 4.x still serves, so one request header (v1) and
one response header (v0) cover them all.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Callable

API_METADATA = 3
API_SASL_HANDSHAKE = 17
API_VERSIONS = 18
API_CREATE_ACLS = 30
API_SASL_AUTHENTICATE = 36
METADATA_VERSION = 4

_DIGESTS = {"SCRAM-SHA-512": "sha512", "SCRAM-SHA-256": "sha256"}


class KafkaWireError(ConnectionError):
    """The broker refused a request or answered something this module cannot read."""


@dataclass(frozen=True)
class AclBinding:
    """One ALLOW rule: a principal may do an operation on a resource (by name, or by name prefix)."""

    resource_type: int  # 2 topic, 3 group, 4 cluster, 5 transactional id
    resource_name: str
    prefixed: bool
    principal: str  # "User:worker"
    operation: int  # 2 all, 3 read, 4 write, 5 create, 8 describe, 10 describe configs, 12 idempotent write

    def encode(self) -> bytes:
        # CreateAcls v1 creation: pattern type 3 literal, 4 prefixed; host "*"; permission 3 allow.
        return (struct.pack(">b", self.resource_type) + _string(self.resource_name)
                + struct.pack(">b", 4 if self.prefixed else 3) + _string(self.principal) + _string("*")
                + struct.pack(">bb", self.operation, 3))


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _read_string(data: bytes, offset: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", data, offset)
    offset += 2
    if length < 0:
        return None, offset
    return data[offset : offset + length].decode(), offset + length


def _read_bytes(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">i", data, offset)
    offset += 4
    return data[offset : offset + max(length, 0)], offset + max(length, 0)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise KafkaWireError("broker closed the connection")
        buf += chunk
    return bytes(buf)


class Connection:
    """One connection to a broker: plaintext, or TLS verified against `tls`."""

    def __init__(self, host: str, port: int, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        self._sock = tls.wrap_socket(sock, server_hostname=host) if tls is not None else sock
        self._correlation = 0

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def request(self, api_key: int, version: int, body: bytes) -> bytes:
        """Send one request (header v1) and return the response body after its correlation id."""
        self._correlation += 1
        client_id = b"atlas-broker-script"
        header = struct.pack(">hhih", api_key, version, self._correlation, len(client_id)) + client_id
        payload = header + body
        self._sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", _recv_exact(self._sock, 4))
        response = _recv_exact(self._sock, size)
        (got,) = struct.unpack_from(">i", response)
        if got != self._correlation:
            raise KafkaWireError(f"correlation id mismatch: sent {self._correlation}, got {got}")
        return response[4:]

    def versions(self) -> dict[int, tuple[int, int]]:
        """ApiVersions v0: api key -> (lowest, highest) version the broker serves."""
        data = self.request(API_VERSIONS, 0, b"")
        error_code, count = struct.unpack_from(">hi", data)
        if error_code != 0:
            raise KafkaWireError(f"ApiVersions error_code {error_code}")
        entries = struct.iter_unpack(">hhh", data[6 : 6 + 6 * count])
        return {key: (low, high) for key, low, high in entries}

    def brokers(self) -> list[tuple[int, str, int]]:
        """Metadata v4 without topics: the (node id, host, port) of every live broker."""
        low, high = self.versions().get(API_METADATA, (1, 0))
        if not low <= METADATA_VERSION <= high:
            raise KafkaWireError(f"broker does not support Metadata v{METADATA_VERSION} ({low}..{high})")
        # No topics (empty array, not null), no auto-creation.
        data = self.request(API_METADATA, METADATA_VERSION, struct.pack(">ib", 0, 0))
        _throttle, count = struct.unpack_from(">ii", data)
        offset, brokers = 8, []
        for _ in range(count):
            (node_id,) = struct.unpack_from(">i", data, offset)
            host, offset = _read_string(data, offset + 4)
            (port,) = struct.unpack_from(">i", data, offset)
            _rack, offset = _read_string(data, offset + 4)
            brokers.append((node_id, host or "", port))
        return brokers

    def sign_in(self, username: str, password: str, mechanism: str = "SCRAM-SHA-512") -> None:
        """SASL/SCRAM (RFC 5802) over SaslHandshake v1 and SaslAuthenticate v0; raises unless both sides prove it."""
        error_code, _ = struct.unpack_from(">hi", self.request(API_SASL_HANDSHAKE, 1, _string(mechanism)))
        if error_code != 0:
            raise KafkaWireError(f"the broker does not take {mechanism} here (error {error_code})")
        scram(self._sasl, username, password, mechanism)

    def _sasl(self, token: bytes) -> bytes:
        data = self.request(API_SASL_AUTHENTICATE, 0, struct.pack(">i", len(token)) + token)
        (error_code,) = struct.unpack_from(">h", data)
        message, offset = _read_string(data, 2)
        if error_code != 0:
            raise KafkaWireError(f"SASL sign-in refused (error {error_code}): {message}")
        return _read_bytes(data, offset)[0]

    def create_acls(self, bindings: list[AclBinding]) -> None:
        """CreateAcls v1 (adding a rule that exists already changes nothing); raises on the first refusal."""
        body = struct.pack(">i", len(bindings)) + b"".join(binding.encode() for binding in bindings)
        data = self.request(API_CREATE_ACLS, 1, body)
        (count,) = struct.unpack_from(">i", data, 4)
        offset = 8
        for binding in bindings[:count]:
            (error_code,) = struct.unpack_from(">h", data, offset)
            message, offset = _read_string(data, offset + 2)
            if error_code != 0:
                raise KafkaWireError(f"CreateAcls refused {binding} (error {error_code}): {message}")


def scram(exchange: Callable[[bytes], bytes], username: str, password: str, mechanism: str,
          nonce: str | None = None) -> None:
    """The client's side of SCRAM (RFC 5802, RFC 7677): two messages through `exchange`; raises unless both prove it."""
    digest = _DIGESTS[mechanism]
    nonce = nonce or base64.b64encode(secrets.token_bytes(24)).decode()
    first_bare = f"n={username.replace('=', '=3D').replace(',', '=2C')},r={nonce}"
    server_first = exchange(f"n,,{first_bare}".encode()).decode()
    fields = dict(part.split("=", 1) for part in server_first.split(",") if "=" in part)
    if not fields.get("r", "").startswith(nonce) or "s" not in fields or "i" not in fields:
        raise KafkaWireError(f"SCRAM: an answer this client cannot take: {server_first[:200]}")
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    final_bare = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.new(hashlib.new(digest, client_key).digest(), auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    server_final = exchange(f"{final_bare},p={proof}".encode()).decode()
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    expected = base64.b64encode(hmac.new(server_key, auth_message, digest).digest()).decode()
    if not hmac.compare_digest(server_final, f"v={expected}"):
        raise KafkaWireError("SCRAM: the broker did not prove it knows the password")


def probe(host: str, port: int, timeout: float = 2.0, tls: ssl.SSLContext | None = None,
          credentials: tuple[str, str] | None = None) -> bool:
    """True if the broker answers ApiVersions and, signed in with `credentials` if given, lists itself in Metadata."""
    try:
        with Connection(host, port, timeout, tls) as conn:
            if credentials is not None:
                conn.sign_in(*credentials)
            brokers = conn.brokers()
    except (OSError, struct.error):
        return False
    return any(b_port == port for _node, _host, b_port in brokers)
