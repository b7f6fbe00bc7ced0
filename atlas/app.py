"""The one Faust app. `faust -A atlas.app worker` and `python -m atlas worker` both start it."""
from __future__ import annotations

import faust

from atlas.settings import Guarantee, settings

app = faust.App(
    settings.app_id,
    broker=settings.broker_url,
    store="rocksdb://",
    datadir=str(settings.data_dir),
    processing_guarantee=settings.processing_guarantee.value,
    topic_partitions=settings.partitions,
    topic_replication_factor=1,
    key_serializer="raw",
    value_serializer="raw",
    broker_commit_interval=settings.commit_interval,
    producer_linger_ms=settings.producer_linger_ms,
    stream_wait_empty=False,
    web_host=settings.web_host,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    canonical_url=f"http://{settings.web_host}:{settings.web_port}",
    # Off: they would serve raw table contents and the cluster layout to anyone.
    web_tables_enabled=False,
    web_router_enabled=False,
    web_graph_enabled=False,
    web_stats_enabled=False,
    web_metrics_enabled=False,
    autodiscover=["atlas.agents", "atlas.web"],
    origin="atlas",
)

EXACTLY_ONCE = settings.processing_guarantee is Guarantee.EXACTLY_ONCE


def main() -> None:
    """Run the Faust command line on this app."""
    app.main()
