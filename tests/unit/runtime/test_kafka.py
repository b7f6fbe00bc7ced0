"""How every Kafka client of ATLAS signs in: the ATLAS_KAFKA_* settings as aiokafka and Faust options."""
from __future__ import annotations

import ssl

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
