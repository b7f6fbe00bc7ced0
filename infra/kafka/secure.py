"""The local broker's secure profile: TLS, SCRAM users and ACLs by principal.

The client listener speaks SASL_SSL with SCRAM-SHA-512 and the controller listener
SASL_PLAINTEXT with PLAIN (KRaft controllers cannot read SCRAM credentials, which live in
the metadata they serve). The StandardAuthorizer denies what no ACL allows. The files are
made once per data directory, with the standard library and the `openssl` command:

  security/ca.pem            the CA that clients trust
  security/broker.pem        the broker's key and certificate (SAN 127.0.0.1, localhost)
  security/users.json        each principal's password (mode 0600)
  security/<user>.env        ATLAS_KAFKA_* settings that sign a client in as <user>

Principals (what `grants` allows them, for an app id and topic prefix):
  broker    the broker itself: super user
  worker    ATLAS workers: every topic, group and transactional id of the app
  producer  an external order producer: writes `<prefix>.commands`, nothing else
  admin     the operators' path: writes `<prefix>.admin`, `.risk.control` and `.venue.control`
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path

if __package__:
    from .wire import AclBinding
else:  # run or loaded as a file: the sibling module
    from wire import AclBinding  # type: ignore[no-redef]

USERS = ("broker", "worker", "producer", "admin")
MECHANISM = "SCRAM-SHA-512"
SUPER_USER = "broker"

TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID = 2, 3, 4, 5
ALL, WRITE, DESCRIBE, DESCRIBE_CONFIGS, IDEMPOTENT_WRITE = 2, 4, 8, 10, 12
ADMIN_TOPICS = ("admin", "risk.control", "venue.control")


class SecurityError(RuntimeError):
    """The secure profile's files could not be made."""


class Material:
    """The CA, the broker's certificate and the users' passwords of one broker data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def broker_pem(self) -> Path:
        return self.directory / "broker.pem"

    @property
    def users_file(self) -> Path:
        return self.directory / "users.json"

    def env_file(self, user: str) -> Path:
        return self.directory / f"{user}.env"

    def ensure(self) -> None:
        """Make whatever is missing; what exists is kept (the formatted storage holds these passwords)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if not self.users_file.is_file():
            write_private(self.users_file, json.dumps({user: secrets.token_urlsafe(24) for user in USERS}, indent=2))
        if not (self.ca_file.is_file() and self.broker_pem.is_file()):
            self._make_certificates()

    def passwords(self) -> dict[str, str]:
        """Each principal's password."""
        return json.loads(self.users_file.read_text())

    def scram_arguments(self) -> list[str]:
        """The storage tool's options that create every user's SCRAM credential at format time."""
        return [arg for user, password in self.passwords().items()
                for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")]

    def client_env(self, user: str, bootstrap: str) -> dict[str, str]:
        """The ATLAS_KAFKA_* settings of a client signed in as `user`."""
        return {
            "ATLAS_KAFKA_BOOTSTRAP": bootstrap, "ATLAS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "ATLAS_KAFKA_SASL_MECHANISM": MECHANISM, "ATLAS_KAFKA_USERNAME": user,
            "ATLAS_KAFKA_PASSWORD": self.passwords()[user], "ATLAS_KAFKA_CA_FILE": str(self.ca_file),
        }

    def write_env_files(self, bootstrap: str) -> None:
        """One `<user>.env` per client principal, to source before a worker or a producer starts."""
        for user in USERS:
            if user != SUPER_USER:
                lines = (f"export {name}={shlex.quote(value)}" for name, value in self.client_env(user, bootstrap).items())
                write_private(self.env_file(user), "\n".join(lines) + "\n")

    def properties(self, port: int, controller_port: int) -> dict[str, str]:
        """The server.properties entries of the secure profile (they replace the plaintext listeners)."""
        password = self.passwords()[SUPER_USER]
        plain = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                 f'username="{SUPER_USER}" password="{password}" user_{SUPER_USER}="{password}";')
        scram = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                 f'username="{SUPER_USER}" password="{password}";')
        return {
            "listeners": f"CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{port}",
            "inter.broker.listener.name": "CLIENT",
            "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.client.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.broker_pem),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{SUPER_USER}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def _make_certificates(self) -> None:
        openssl = shutil.which("openssl")
        if not openssl:
            raise SecurityError("openssl not found: the secure profile makes its certificates with it")
        ca_key, key, csr, ext = (self.directory / name for name in ("ca.key", "broker.key", "broker.csr", "ext.cnf"))
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        steps = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", self.ca_file, "-days", "3650",
             "-subj", "/CN=ATLAS local Kafka CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", ca_key, "-set_serial",
             f"0x{secrets.token_hex(16)}", "-days", "825", "-extfile", ext, "-out", self.directory / "broker.crt"],
        ]
        for step in steps:
            result = subprocess.run([openssl, *map(str, step)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                raise SecurityError(f"openssl {step[0]} failed: {result.stderr.strip()[-500:]}")
        # Kafka's PEM key store: the private key (PKCS#8, as openssl writes it) and the chain.
        write_private(self.broker_pem, key.read_text() + (self.directory / "broker.crt").read_text())
        for path in (ca_key, key, csr, ext):
            path.unlink()


def grants(app_id: str, topic_prefix: str) -> list[AclBinding]:
    """The ACLs of an app: what each principal of `USERS` may do (the broker needs none: it is the super user)."""
    worker, producer, admin = "User:worker", "User:producer", "User:admin"
    rules = [
        AclBinding(TOPIC, f"{topic_prefix}.", True, worker, ALL),
        AclBinding(TOPIC, f"{app_id}-", True, worker, ALL),  # changelogs and Faust's assignor topic
        AclBinding(GROUP, app_id, False, worker, ALL),  # the app's group
        AclBinding(GROUP, f"{app_id}-", True, worker, ALL),  # the exporter's
        AclBinding(TRANSACTIONAL_ID, f"{app_id}-", True, worker, ALL),  # exactly_once producers ("<app>-<group>-<n>")
        *(AclBinding(CLUSTER, "kafka-cluster", False, worker, op) for op in (DESCRIBE, DESCRIBE_CONFIGS, IDEMPOTENT_WRITE)),
        *(AclBinding(TOPIC, f"{topic_prefix}.commands", False, producer, op) for op in (WRITE, DESCRIBE)),
    ]
    rules += [AclBinding(TOPIC, f"{topic_prefix}.{name}", False, admin, op)
              for name in ADMIN_TOPICS for op in (WRITE, DESCRIBE)]
    return rules


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (also when it exists already with a looser mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
