"""How every Kafka client of ATLAS signs in: the ATLAS_KAFKA_* settings as aiokafka and Faust options."""
from __future__ import annotations

import ssl
from types import SimpleNamespace

import faust
import pytest
from pydantic import ValidationError

from atlas.runtime.kafka import client_options, faust_credentials, sign_in_options
from atlas.settings import Settings

SCRAM = {"kafka_security_protocol": "SASL_SSL", "kafka_username": "worker", "kafka_password": "s3cret"}


def test_plaintext_is_the_default_and_signs_in_as_nobody():
    config = Settings(kafka_bootstrap="a:1,b:2")
    assert client_options(config) == {"bootstrap_servers": ["a:1", "b:2"], "security_protocol": "PLAINTEXT"}
    assert faust_credentials(config) is None


def test_sasl_ssl_gives_every_client_the_principal_and_a_verifying_tls_context():
    options = sign_in_options(Settings(**SCRAM))
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "worker", "sasl_plain_password": "s3cret"}
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_the_faust_app_signs_in_the_same_way():
    credentials = faust_credentials(Settings(**SCRAM, kafka_sasl_mechanism="SCRAM-SHA-256"))
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value, credentials.protocol.value) == \
        ("worker", "s3cret", "SCRAM-SHA-256", "SASL_SSL")


def test_ssl_without_sasl_is_tls_alone():
    config = Settings(kafka_security_protocol="SSL")
    assert set(sign_in_options(config)) == {"security_protocol", "ssl_context"}
    assert isinstance(faust_credentials(config), faust.SSLCredentials)


@pytest.mark.parametrize("missing", ["kafka_username", "kafka_password"])
def test_sasl_without_a_user_name_or_password_is_refused_at_start(missing):
    with pytest.raises(ValidationError, match="needs ATLAS_KAFKA_USERNAME and ATLAS_KAFKA_PASSWORD"):
        Settings(**{k: v for k, v in SCRAM.items() if k != missing})


def test_the_password_never_shows_in_the_settings_repr():
    assert "s3cret" not in repr(Settings(**SCRAM))



def test_a_settings_error_does_not_quote_the_password():
    with pytest.raises(ValidationError) as refused:
        Settings(kafka_security_protocol="SASL_SSL", kafka_password="hunter2-secret")
    assert "hunter2-secret" not in str(refused.value)


class Log:
    """What a read_committed consumer of some partitions returns: the offsets that hold a committed record."""

    def __init__(self, partitions: dict[str, tuple[int, int, set[int]]]) -> None:
        self.partitions = partitions  # name -> (log start, end offset, offsets of committed records)
        self.positions: dict[str, int] = {}
        self.fetches = 0

    async def beginning_offsets(self, tps):
        return {tp: self.partitions[tp][0] for tp in tps}

    async def end_offsets(self, tps):
        return {tp: self.partitions[tp][1] for tp in tps}

    def assign(self, tps) -> None:
        self.positions = {tp: self.positions.get(tp, 0) for tp in tps}

    def seek(self, tp, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp) -> int:
        return self.positions[tp]

    async def getmany(self, *tps, timeout_ms: int):
        self.fetches += 1
        got = {}
        for tp in tps:
            start, end, records = self.partitions[tp]
            batch = range(self.positions[tp], min(end, self.positions[tp] + 10))
            got[tp] = [SimpleNamespace(offset=o) for o in batch if o in records]
            self.positions[tp] = batch.stop
        return {tp: records for tp, records in got.items() if records}


def test_the_last_record_is_found_behind_commit_markers_and_aborted_transactions():
    import asyncio

    from atlas.runtime.kafka import last_records

    log = Log({
        "markers": (0, 221, set(range(220))),  # records 0-219, the commit marker at 220
        "aborted": (0, 900, set(range(100))),  # records 0-99, then 800 offsets of aborted records and markers
        "empty": (50, 50, set()),  # compacted or never written
        "all aborted": (0, 40, set()),
    })
    found = asyncio.run(last_records(log, list(log.partitions), window=64))
    assert found == {"markers": 219, "aborted": 99, "empty": None, "all aborted": None}
