"""Settings, read from the environment in this one place (prefix `ATLAS_`)."""
from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Guarantee(str, enum.Enum):
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


class RateLimit(BaseModel):
    """A token bucket: refilled at `per_second` tokens a second, holding at most `burst` (a request takes one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_second: float = Field(gt=0, le=1_000_000)
    burst: int = Field(ge=1, le=1_000_000)


class RateLimits(BaseModel):
    """The gateway's buckets: per account for each class of route, and per client address for every route."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    orders: RateLimit = RateLimit(per_second=50, burst=100)  # POST /api/v1/orders
    amends: RateLimit = RateLimit(per_second=50, burst=100)  # DELETE and PATCH of an order
    reads: RateLimit = RateLimit(per_second=100, burst=200)  # every other API route (GET, the risk preview)
    admin: RateLimit = RateLimit(per_second=10, burst=20)  # /api/v1/admin/...
    address: RateLimit = RateLimit(per_second=500, burst=1000)  # every API request from one address


class Settings(BaseSettings):
    """Everything a worker, the CLI and the benchmarks are configured with."""

    # "none" unsets an optional setting (ATLAS_RETAIN_CLOSED_DAYS=none). An error never quotes what it
    # was given: that would print ATLAS_KAFKA_PASSWORD into the worker's log.
    # The tracing settings also answer to OpenTelemetry's standard variables (OTEL_EXPORTER_OTLP_ENDPOINT, ...).
    model_config = SettingsConfigDict(env_prefix="ATLAS_", extra="ignore", frozen=True, env_parse_none_str="none",
                                      hide_input_in_errors=True, populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers, host:port[,host:port]")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"] = Field(
        "PLAINTEXT", description="How every Kafka client of ATLAS connects (SASL_SSL for the broker's secure profile)")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism under SASL_SSL or SASL_PLAINTEXT")
    kafka_username: str | None = Field(None, max_length=256, description="SASL principal's user name")
    kafka_password: SecretStr | None = Field(None, description="SASL principal's password")
    kafka_ca_file: Path | None = Field(None, description="PEM CA the broker's certificate chains to under SSL or "
                                                         "SASL_SSL (the system's CAs by default)")
    app_id: str = Field("atlas", pattern=r"^[A-Za-z0-9._\-]+$", description="Faust app id: consumer group and changelog prefix")
    topic_prefix: str = Field("atlas", pattern=r"^[A-Za-z0-9._\-]+$", description="Prefix of every ATLAS topic")
    partitions: int = Field(8, ge=1, le=256, description="Partitions of every ATLAS topic (all must match)")
    replication_factor: int = Field(1, ge=1, description="Replication of topics the worker creates (1 for the local broker)")
    data_dir: Path = Field(ROOT / ".atlas" / "data", description="Worker state: RocksDB tables")
    web_host: str = Field("127.0.0.1", description="Address the worker's web server binds to")
    web_port: int = Field(8080, ge=1, le=65535)
    web_tls_cert: Path | None = Field(None, description="PEM certificate chain: the web server speaks HTTPS only "
                                                         "(with ATLAS_WEB_TLS_KEY)")
    web_tls_key: Path | None = Field(None, description="PEM private key of ATLAS_WEB_TLS_CERT")
    web_tls_ca: Path | None = Field(None, description="PEM CA the workers' certificates chain to, which a worker "
                                                      "trusts when it calls another (the system's CAs by default)")
    signature_window_ms: int = Field(5_000, ge=100, le=300_000, description="How far a signed request's timestamp "
                                                                             "may be from the worker's clock (ms)")
    allowed_hosts: str = Field("", max_length=2048,
                               description="Comma-separated host names requests may be addressed to, beside loopback "
                                           "and ATLAS_WEB_HOST (the Host header; others get 421, which stops DNS "
                                           "rebinding)")
    processing_guarantee: Guarantee = Guarantee.AT_LEAST_ONCE
    accounts_file: Path = Field(ROOT / "config" / "accounts.demo.json",
                                description="Accounts: starting balances, limits, roles (the demo accounts by default)")
    keys_file: Path | None = Field(ROOT / ".atlas" / "keys.json",
                                   description="API keys made by `python -m atlas keys create` (salted digests, "
                                               "scopes, revocations), reloaded within a second of a change")
    demo_mode: bool = Field(False, description="Accept the demo accounts' keys (unsalted digests of keys printed "
                                               "in the README) and hand them to the console: loopback only")
    access_log: bool = Field(False, description="Log a line per HTTP request (method, path, status, ms, account; "
                                                "never a key)")
    instruments_file: Path = Field(ROOT / "config" / "instruments.json")
    demo_keys_file: Path | None = Field(
        None, description="Demo mode: a JSON file of demo accounts' clear API keys, which the console offers at "
                          "sign-in (never set this outside a demo)")
    rate_limits: RateLimits = Field(RateLimits(), description="Token buckets of the gateway, as JSON: "
                                    "{\"orders\": {\"per_second\": 50, \"burst\": 100}, ...} (classes: orders, amends, "
                                    "reads, admin, address; a class left out keeps its default)")
    stream_max_sessions: int = Field(1_000, ge=1, le=100_000, description="Live streams (WebSockets) one worker "
                                                                           "serves at once; past it, 503")
    stream_max_per_account: int = Field(10, ge=1, le=1_000, description="Live streams one account may hold open "
                                                                         "at once on a worker; past it, closed with 4429")
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024,
                                description="Largest request body the web server reads (413 past it)")
    max_json_depth: int = Field(32, ge=4, le=256, description="Deepest nesting of arrays and objects a JSON body "
                                                              "may have (400 past it, checked before parsing)")
    commit_interval: float | None = Field(
        None, gt=0, description="Seconds between offset commits (Faust broker_commit_interval); by default 2.8 under "
                                "at_least_once and 0.1 under exactly_once, where each commit is what makes outputs visible")
    session_timeout: float = Field(10.0, ge=6.0, description="Consumer-group session timeout: how soon a dead worker's partitions move")
    changelog_segment_ms: int = Field(600_000, ge=1_000, description="Table changelogs roll a segment this often "
                                                                     "(ms): compaction cleans only rolled segments, "
                                                                     "so a restore reads at most this much uncompacted")
    changelog_tombstone_ms: int = Field(86_400_000, ge=0, description="How long compacted table changelogs keep a "
                                                                      "delete (ms), after which a restore no longer "
                                                                      "reads an archived order's deletes; a worker "
                                                                      "away longer than this must not keep its local "
                                                                      "tables (deleted keys would stay in them)")
    producer_linger_ms: int = Field(5, ge=0, description="Worker producer linger: batches its writes (0 sends each at once)")
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field("text", description="text for a terminal; json: one object per line "
                                                                     "with the active span's trace and span ids")
    otel_endpoint: str | None = Field(
        None, pattern=r"^https?://[^\s]+$", max_length=2048,
        validation_alias=AliasChoices("ATLAS_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP receiver the worker sends its spans to (http://host:4318); unset: tracing off")
    otel_sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, validation_alias=AliasChoices("ATLAS_OTEL_SAMPLE_RATIO", "OTEL_TRACES_SAMPLER_ARG"),
        description="Share of traces started here that are recorded (parent-based: a sampled parent is followed)")
    otel_service_name: str = Field(
        "atlas", pattern=r"^[A-Za-z0-9._\-]+$", max_length=128,
        validation_alias=AliasChoices("ATLAS_OTEL_SERVICE_NAME", "OTEL_SERVICE_NAME"),
        description="service.name of the worker's spans")
    event_loop: Literal["uvloop", "aio"] = Field("uvloop", description="The worker's asyncio event loop: uvloop, or "
                                                                       "the standard library's (aio)")
    batch_max: int = Field(500, ge=1, le=10_000, description="Events an agent processes as one batch at most "
                                                              "(its state written once per key per batch)")
    batch_wait_ms: float = Field(2.0, gt=0, le=1_000, description="Milliseconds an agent waits for more events "
                                                                   "before it processes a batch that is not full")
    fault_kill_at: str | None = Field(None, pattern=r"^(oms-state-written|oms-outputs-sent):[1-9]\d{0,6}$",
                                      description="Tests only: SIGKILL the worker at this point of the batch with its "
                                                  "n-th event "
                                                  "(see atlas/agents/faults.py)")
    retain_closed_orders: int = Field(10_000, ge=0, description="Closed orders each account keeps in the OMS table; "
                                                                "older ones are archived (their history stays in the audit trail)")
    retain_closed_days: float | None = Field(7.0, gt=0, description="Days a closed order stays in the OMS table at most "
                                                                    "(unset: only the count applies)")
    venue_enabled: bool = Field(True, description="Run the simulated venue in this worker (off: something else answers "
                                                  "atlas.venue.orders, as the OMS tests that play the venue do)")
    venue_seed: int = Field(7, description="Seed of the synthetic market's random walk")
    audit_enabled: bool = Field(True, description="Run the audit exporter in this worker")
    audit_sink: str = Field(f"file://{ROOT / '.atlas'}", pattern=r"^(file|s3)://.+",
                            description="Where the audit trail goes: file://PATH or s3://bucket[/prefix]")
    audit_prefix: str = Field("audit", description="Key prefix of the trail inside the sink")
    audit_max_records: int = Field(5_000, ge=1, description="An audit object holds at most this many records")
    audit_max_age: float = Field(5.0, gt=0, description="Seconds a record may wait before its object is written")
    audit_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = Field(
        None, description="S3 Object Lock retention mode of each audit object (the bucket must have Object Lock on)")
    audit_lock_days: int = Field(1, ge=1, description="S3 Object Lock retention, in days")
    audit_versioning: bool = Field(False, description="Switch the S3 bucket's versioning on at start (Object Lock "
                                                      "needs it; a folder sink ignores this)")
    cloud_table_prefix: str = Field("atlas", pattern=r"^[A-Za-z0-9_.\-]{1,200}$",
                                    description="Prefix of the read model's DynamoDB tables (<prefix>-orders, "
                                                "-executions, -balances, -idempotency)")
    read_model: Literal["tables", "dynamodb"] = Field(
        "tables", description="Where the gateway's GET routes (orders, executions, balances) read: this worker's "
                              "tables (forwarding to the owner), or the DynamoDB read model with consistent reads "
                              "(`python -m atlas cloud project` fills it), so that read-only gateways hold no state")
    cloud_require_tls: bool = Field(True, description="The audit bucket's policy refuses plain HTTP (`cloud provision` "
                                                      "and `verify`); off only for an S3-compatible store on a "
                                                      "private network without TLS")

    @model_validator(mode="after")
    def _credentials_are_complete(self) -> "Settings":
        if self.kafka_security_protocol.startswith("SASL_") and not (self.kafka_username and self.kafka_password):
            raise ValueError(f"ATLAS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                             "ATLAS_KAFKA_USERNAME and ATLAS_KAFKA_PASSWORD")
        if (self.web_tls_cert is None) != (self.web_tls_key is None):
            raise ValueError("ATLAS_WEB_TLS_CERT and ATLAS_WEB_TLS_KEY go together: set both or neither")
        return self

    @property
    def web_scheme(self) -> str:
        return "https" if self.web_tls_cert is not None else "http"

    @property
    def commit_seconds(self) -> float:
        """The commit interval in effect (Kafka Streams' defaults differ by guarantee the same way)."""
        if self.commit_interval is not None:
            return self.commit_interval
        return 0.1 if self.processing_guarantee == Guarantee.EXACTLY_ONCE else 2.8

    @property
    def broker_url(self) -> str:
        return ";".join(f"kafka://{host}" for host in self.kafka_bootstrap.split(","))

    @property
    def audit_group(self) -> str:
        """The audit exporter's consumer group (its committed offsets are what `audit verify` checks)."""
        return f"{self.app_id}-audit"

    @property
    def projector_group(self) -> str:
        """The read model projector's consumer group (`python -m atlas cloud project`)."""
        return f"{self.app_id}-projector"

    @property
    def oms_changelog(self) -> str:
        """The OMS table's changelog topic (accounts and orders, compacted; Faust names it after the app)."""
        return f"{self.app_id}-oms-changelog"

    def topic(self, name: str) -> str:
        """The full name of an ATLAS topic."""
        return f"{self.topic_prefix}.{name}"

    @property
    def bootstrap_servers(self) -> list[str]:
        return [host.strip() for host in self.kafka_bootstrap.split(",") if host.strip()]


settings = Settings()
