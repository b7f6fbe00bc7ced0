"""How every ATLAS Kafka client connects: the ATLAS_KAFKA_* settings as aiokafka and Faust options.

One place, so that the worker, the gateway's producer, the exporter, the live streams, the
CLI, the benchmarks and the tests all sign in the same way (see the README's Security section).
"""
from __future__ import annotations

import ssl
import time
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


async def last_records(consumer: Any, tps: list, window: int = 64, timeout: float = 30.0,
                       starts: dict[Any, int] | None = None) -> dict[Any, int | None]:
    """Per partition, the offset of its last record that `consumer` returns (None when it returns none).

    Not the end offset less one: with transactions a commit or abort marker takes an offset after
    each transaction, and a read_committed consumer skips aborted records. So read the last
    `window` offsets and, where they hold no record, the `window * 8` before them, and so on to the
    log start. `consumer` is a started aiokafka consumer, read_committed for committed records; its
    assignment is replaced. `starts`: the partitions' log starts, if the caller has asked for them already.
    """
    if starts is None:
        starts = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    last: dict[Any, int | None] = {tp: None for tp in tps}
    upper = {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]}  # offsets at and above it were read: no record
    deadline = time.monotonic() + timeout
    while upper:
        lower = {tp: max(starts[tp], hi - window) for tp, hi in upper.items()}
        consumer.assign(list(upper))
        for tp, lo in lower.items():
            consumer.seek(tp, lo)
        reading = set(upper)
        while reading:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the last records of {sorted(map(tuple, reading))[:5]} not read in {timeout:g} s")
            for tp, records in (await consumer.getmany(*reading, timeout_ms=200)).items():
                found = [r.offset for r in records if r.offset < upper[tp]]
                if found:
                    last[tp] = max(found) if last[tp] is None else max(last[tp], *found)
            reading = {tp for tp in reading if await consumer.position(tp) < upper[tp]}
        upper = {tp: lower[tp] for tp in upper if last[tp] is None and lower[tp] > starts[tp]}
        window *= 8
    return last
