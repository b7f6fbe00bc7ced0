"""How every ATLAS Kafka client connects: the ATLAS_KAFKA_* settings as aiokafka and Faust options.

One place, so that the worker, the gateway's producer, the exporter, the live streams, the
CLI, the benchmarks and the tests all sign in the same way (see the README's Security section).
"""
from __future__ import annotations

import ssl
from functools import cache
from typing import Any

from atlas.settings import Settings, settings


@cache
def _tls(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def tls_context(config: Settings = settings) -> ssl.SSLContext | None:
    """The TLS context clients verify the broker with, or None on a plaintext connection."""
    if not config.kafka_security_protocol.endswith("SSL"):
        return None
    return _tls(str(config.kafka_ca_file) if config.kafka_ca_file else None)


def client_options(config: Settings = settings) -> dict[str, Any]:
    """Keyword arguments of an aiokafka producer, consumer or admin client: servers and sign-in."""
    return {"bootstrap_servers": config.bootstrap_servers, **sign_in_options(config)}


def sign_in_options(config: Settings = settings) -> dict[str, Any]:
    """The sign-in part of `client_options` alone, for clients given their servers otherwise (the benchmarks)."""
    options: dict[str, Any] = {"security_protocol": config.kafka_security_protocol}
    context = tls_context(config)
    if context is not None:
        options["ssl_context"] = context
    if config.kafka_security_protocol.startswith("SASL_"):
        options.update(sasl_mechanism=config.kafka_sasl_mechanism, sasl_plain_username=config.kafka_username,
                       sasl_plain_password=config.kafka_password.get_secret_value())
    return options


def faust_credentials(config: Settings = settings) -> Any:
    """The Faust app's `broker_credentials` (None: plaintext)."""
    import faust

    context = tls_context(config)
    if config.kafka_security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=config.kafka_username, password=config.kafka_password.get_secret_value(),
                                     ssl_context=context, mechanism=config.kafka_sasl_mechanism)
    return faust.SSLCredentials(context) if context is not None else None
