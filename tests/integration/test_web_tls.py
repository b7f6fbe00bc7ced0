"""The web server over TLS when it has a certificate (issue 14, finding 4): HTTPS only, HSTS, and workers that call
each other over HTTPS, trusting the deployment's CA."""
from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.error
import urllib.request
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.live import Api, Cluster

pytestmark = pytest.mark.integration


def write_pki(folder) -> tuple[str, str, str]:
    """A CA and a worker certificate for 127.0.0.1 and localhost signed by it: (cert, key, ca) paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ATLAS test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "worker")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "worker.pem", folder / "worker.key", folder / "ca.pem"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return tuple(str(p) for p in paths)


@pytest.fixture(scope="module")
def tls_cluster(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    cert, key, ca = write_pki(root)
    cluster = Cluster(kafka_bootstrap, root, f"tl-{uuid.uuid4().hex[:8]}", extra_env={
        "ATLAS_WEB_TLS_CERT": cert, "ATLAS_WEB_TLS_KEY": key, "ATLAS_WEB_TLS_CA": ca})
    cluster.start_worker()
    cluster.start_worker()  # two: reads of the other's accounts are forwarded over HTTPS
    yield cluster
    cluster.stop()


def test_the_api_answers_over_https_with_hsts_and_not_in_the_clear(tls_cluster):
    worker = tls_cluster.workers[0]
    assert worker.url.startswith("https://")
    api = Api(worker.url, tls_cluster.keys["alice"], tls=worker.tls())
    response = api.get("/api/v1/balances")
    assert response.status == 200 and response.headers["strict-transport-security"].startswith("max-age=")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(worker.url.replace("https://", "http://") + "/healthz", timeout=5).read()
    with pytest.raises(urllib.error.URLError) as untrusted:
        Api(worker.url, tls_cluster.keys["alice"], tls=ssl.create_default_context()).get("/api/v1/balances")
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)


def test_each_worker_answers_every_accounts_reads_forwarding_over_https(tls_cluster):
    forwarded = 0
    for worker in tls_cluster.workers:
        for account in ("alice", "bob", *(f"trader-{n:02d}" for n in range(8))):
            api = Api(worker.url, tls_cluster.keys[account], tls=worker.tls())
            api.wait_for("/api/v1/balances", lambda d: True, timeout=30)
            answer = api.get("/api/v1/balances")
            assert answer.status == 200 and answer.body["account_id"] == account
            forwarded += answer.headers["x-atlas-worker"] != worker.url  # its owner is the other worker
    assert forwarded > 0
