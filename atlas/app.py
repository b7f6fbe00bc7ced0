"""The one Faust app. `faust -A atlas.app worker` and `python -m atlas worker` both start it."""
from __future__ import annotations

import gc
import logging
import os
import shutil
import ssl

import faust

from atlas.runtime import faust_fixes  # noqa: F401  (must patch Faust before the app exists)
from atlas.runtime import tracing
from atlas.runtime.kafka import client_options, faust_credentials
from atlas.runtime.logs import logging_config
from atlas.runtime.reference import InsecureProfile, check_profile
from atlas.settings import Guarantee, settings

log = logging.getLogger(__name__)
EXIT_INSECURE = 78  # EX_CONFIG: the settings would serve demo keys where they are not safe


def server_tls() -> ssl.SSLContext | None:
    """The web server's TLS context when it has a certificate (TLS 1.2 at least), else None: plain HTTP."""
    if settings.web_tls_cert is None or settings.web_tls_key is None:  # both or neither (Settings checks)
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.web_tls_cert, settings.web_tls_key)
    return context


def client_tls() -> ssl.SSLContext:
    """What a worker trusts when it calls another over HTTPS: ATLAS_WEB_TLS_CA, else the system's CAs."""
    return ssl.create_default_context(cafile=str(settings.web_tls_ca) if settings.web_tls_ca else None)


def changelog_configs() -> dict[str, str]:
    """The topic configuration of every table changelog: compacted, with segments that roll often enough for
    compaction to bound what a restore reads (the active segment is never cleaned) and deletes kept for
    `changelog_tombstone_ms` (a day by default, as Kafka's), after which a restore no longer reads
    an archived order at all."""
    return {
        "cleanup.policy": "compact",
        "segment.ms": str(settings.changelog_segment_ms),
        "segment.bytes": str(64 * 1024 * 1024),
        "delete.retention.ms": str(settings.changelog_tombstone_ms),
        "min.cleanable.dirty.ratio": "0.25",
    }


DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' config_source of a value set on the topic itself


async def _configure_changelogs(admin, names: list[str], wanted: dict[str, str]) -> None:
    """Bring changelogs made before (or with other settings) to `wanted`, keeping what else was set on them.

    AlterConfigs replaces a topic's whole configuration, so the values set on each topic (an
    operator's `max.message.bytes`, say) are read first and sent back with ATLAS's. A topic the
    broker refuses to change is logged and left as it is: the worker runs, its restores longer.
    """
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    changes = []
    for response in described:
        for error_code, error_message, _, name, entries in response.resources:
            if error_code:
                log.warning("cannot read the configuration of %s (error %s: %s)", name, error_code, error_message)
                continue
            current = {entry[0]: entry[1] for entry in entries if entry[3] == DYNAMIC_TOPIC_CONFIG}
            if any(current.get(key) != value for key, value in wanted.items()):
                changes.append(ConfigResource(ConfigResourceType.TOPIC, name, {**current, **wanted}))
    if not changes:
        return
    for response in await admin.alter_configs(changes):
        for error_code, error_message, _, name in response.resources:
            if error_code:
                log.warning("cannot set the changelog configuration of %s (error %s: %s): restores read more than "
                            "they need", name, error_code, error_message)


class AtlasApp(faust.App):
    """The Faust app, plus a rule for local state after an unclean stop.

    A table write reaches RocksDB at once and its changelog later, so after `kill -9` the
    local store can hold writes the changelog never got (and a mix of old and new keys
    once recovery replays the changelog over it). Only a worker that stopped cleanly keeps
    its store; otherwise it is wiped and the tables are restored from their changelogs.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.declared_topics: dict[str, None] = {}  # insertion-ordered set of Kafka topic names

    def declare_topic(self, *names: str) -> faust.TopicT:
        """A raw-bytes topic over one or more Kafka topics, which the worker creates at start if missing.

        `atlas.topics` declares every ATLAS topic through this, so the app never imports it.
        """
        self.declared_topics.update(dict.fromkeys(names))
        return self.topic(*names, partitions=settings.partitions, key_serializer="raw", value_serializer="raw")

    async def ensure_topics(self) -> None:
        """Create the declared topics and the tables' changelogs that do not exist yet.

        Runs before any consumer subscribes. The worker command has imported the agents and views
        by then (autodiscovery), and with them `atlas.topics` and the tables.
        """
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        # The tables' changelogs too: Faust creates them itself, but a worker whose consumer
        # subscribed before they existed saw them with no partitions and its agent crashed on
        # the first table write ("PartitionsMismatch ... changelog topic has 0 partitions").
        changelogs = [table.changelog_topic.get_topic_name() for table in self.tables.values()]
        compacted = changelog_configs()
        admin = AIOKafkaAdminClient(**client_options(), client_id=f"{settings.app_id}-admin")
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [NewTopic(name, settings.partitions, settings.replication_factor)
                      for name in self.declared_topics if name not in existing]
            wanted += [NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=compacted)
                       for name in changelogs if name not in existing]
            if wanted:
                try:
                    await admin.create_topics(wanted)
                except TopicAlreadyExistsError:
                    pass  # another worker won the race
            older = [name for name in changelogs if name in existing]
            if older:
                await _configure_changelogs(admin, older, compacted)
        finally:
            await admin.close()

    @property
    def clean_stop_marker(self):
        return self.conf.tabledir / "CLEAN_STOP"

    async def on_first_start(self) -> None:
        try:
            check_profile(self.conf.web_bind)
        except InsecureProfile as refused:
            log.critical("refusing to start: %s", refused)
            os._exit(EXIT_INSECURE)  # before any table, topic or port: nothing to flush or close
        if settings.web_tls_cert is not None:  # reads forwarded to another worker go over HTTPS too
            import aiohttp

            self.http_client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls()))
        tabledir = self.conf.tabledir
        if tabledir.exists() and not self.clean_stop_marker.exists():
            log.warning("no clean stop recorded in %s: wiping local tables to restore them from changelogs", tabledir)
            shutil.rmtree(tabledir)
        self.clean_stop_marker.unlink(missing_ok=True)
        tracing.configure()
        await super().on_first_start()
        await self.ensure_topics()

    async def on_started(self) -> None:
        await super().on_started()
        # What is alive once the worker runs (modules, schemas, Faust's services) stays alive:
        # keep it out of the collector's full passes, which otherwise pause the agent for tens of ms.
        gc.freeze()

    async def on_shutdown(self) -> None:
        # After the children (consumer, producer, tables) have stopped and flushed.
        await super().on_shutdown()
        tracing.shutdown()  # what is buffered goes to the receiver (a few seconds at most)
        if self.conf.tabledir.exists():
            self.clean_stop_marker.write_text("stopped cleanly\n")


app = AtlasApp(
    settings.app_id,
    broker=settings.broker_url,
    broker_credentials=faust_credentials(),
    store="rocksdb://",
    datadir=str(settings.data_dir),
    processing_guarantee=settings.processing_guarantee.value,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    key_serializer="raw",
    value_serializer="raw",
    broker_commit_interval=settings.commit_seconds,
    broker_session_timeout=settings.session_timeout,
    broker_heartbeat_interval=1.0,
    producer_linger_ms=settings.producer_linger_ms,
    stream_wait_empty=False,
    web_host=settings.web_host,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    # aiohttp refuses a larger body while reading it, chunked ones included (413).
    web_application_options={"client_max_size": settings.max_body_bytes},
    canonical_url=f"{settings.web_scheme}://{settings.web_host}:{settings.web_port}",
    web_ssl_context=server_tls(),
    # Off: they would serve raw table contents and the cluster layout to anyone.
    web_tables_enabled=False,
    web_router_enabled=False,
    web_graph_enabled=False,
    web_stats_enabled=False,
    web_metrics_enabled=False,
    autodiscover=["atlas.agents", "atlas.web"],
    origin="atlas",
    logging_config=logging_config(),
    # Faust's monitor, which also feeds the commit latency histogram of /metrics.
    Monitor="atlas.runtime.metrics:AtlasMonitor",
)

EXACTLY_ONCE = settings.processing_guarantee is Guarantee.EXACTLY_ONCE


def main() -> None:
    """Run the Faust command line on this app."""
    app.main()
