"""One typed place for configuration: flags, then ``USERSIGNALS_*`` environment, then defaults.

Every component reads its settings from :class:`Settings` so that no number is scattered
through modules. The CLI builds one with :meth:`Settings.load` and passes it down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from usersignals.errors import ConfigError, UsersignalsError

__all__ = [
    "DEAD_TOPIC",
    "EVENTS_TOPIC",
    "TOPICS",
    "ConfigError",
    "Settings",
    "UsersignalsError",
]

EVENTS_TOPIC = "usersignals.events"
"""The topic every producer writes to; record key = ``user_id``."""

DEAD_TOPIC = "usersignals.events.dead"
"""Rejected input, byte for byte, with the reason in headers."""

TOPICS = (EVENTS_TOPIC, DEAD_TOPIC)


# name of the Settings field -> environment variable
ENV_VARS: Mapping[str, str] = {
    "bootstrap": "USERSIGNALS_BOOTSTRAP",
    "warehouse": "USERSIGNALS_WAREHOUSE",
    "worker_url": "USERSIGNALS_WORKER_URL",
    "write_keys": "USERSIGNALS_WRITE_KEYS",
    "snowplow_app_ids": "USERSIGNALS_SNOWPLOW_APP_IDS",
    "snowplow_origins": "USERSIGNALS_SNOWPLOW_ORIGINS",
    "partitions": "USERSIGNALS_PARTITIONS",
    "retention_days": "USERSIGNALS_RETENTION_DAYS",
    "max_models": "USERSIGNALS_MAX_MODELS",
    "worker_port": "USERSIGNALS_WORKER_PORT",
    "collector_port": "USERSIGNALS_COLLECTOR_PORT",
    "state_dir": "USERSIGNALS_STATE_DIR",
    "topic_prefix": "USERSIGNALS_TOPIC_PREFIX",
    "min_ts": "USERSIGNALS_MIN_TS",
    "flattery_level": "USERSIGNALS_FLATTERY_LEVEL",
    "flattery_min_votes": "USERSIGNALS_FLATTERY_MIN_VOTES",
    "flattery_min_users": "USERSIGNALS_FLATTERY_MIN_USERS",
    "kafka_timeout_s": "USERSIGNALS_KAFKA_TIMEOUT_S",
    "stop_grace_s": "USERSIGNALS_STOP_GRACE_S",
    "log_repeat_s": "USERSIGNALS_LOG_REPEAT_S",
    "loader_retry_s": "USERSIGNALS_LOADER_RETRY_S",
    "loader_restart_s": "USERSIGNALS_LOADER_RESTART_S",
    "loader_backoff_cap_s": "USERSIGNALS_LOADER_BACKOFF_CAP_S",
    "loader_healthy_s": "USERSIGNALS_LOADER_HEALTHY_S",
    "collector_header_timeout_s": "USERSIGNALS_COLLECTOR_HEADER_TIMEOUT_S",
    "collector_body_timeout_s": "USERSIGNALS_COLLECTOR_BODY_TIMEOUT_S",
    "collector_idle_timeout_s": "USERSIGNALS_COLLECTOR_IDLE_TIMEOUT_S",
    "collector_max_connections": "USERSIGNALS_COLLECTOR_MAX_CONNECTIONS",
    "collector_client_rate": "USERSIGNALS_COLLECTOR_CLIENT_RATE",
    "collector_client_burst": "USERSIGNALS_COLLECTOR_CLIENT_BURST",
    "collector_key_rate": "USERSIGNALS_COLLECTOR_KEY_RATE",
    "collector_key_burst": "USERSIGNALS_COLLECTOR_KEY_BURST",
    "collector_auth_fail_rate": "USERSIGNALS_COLLECTOR_AUTH_FAIL_RATE",
    "collector_auth_fail_burst": "USERSIGNALS_COLLECTOR_AUTH_FAIL_BURST",
}

_LOADER_TIMES = ("loader_retry_s", "loader_restart_s", "loader_backoff_cap_s", "loader_healthy_s")

_COLLECTOR_TIMEOUTS = (
    "collector_header_timeout_s",
    "collector_body_timeout_s",
    "collector_idle_timeout_s",
)
_COLLECTOR_RATES = ("collector_client_rate", "collector_key_rate", "collector_auth_fail_rate")
_COLLECTOR_COUNTS = (
    "collector_max_connections",
    "collector_client_burst",
    "collector_key_burst",
    "collector_auth_fail_burst",
)


@dataclass(frozen=True)
class Settings:
    """Runtime settings shared by every command.

    Attributes:
        bootstrap: Kafka bootstrap servers, comma-separated ``host:port``.
        warehouse: Directory of the Parquet warehouse (default ``./data/warehouse``: data lives
            under ``./data``, never in a source folder such as ``warehouse/``).
        worker_url: Web address of a running worker, for ``report --live`` and ``status``.
        write_keys: Keys the HTTP collector accepts as ``Authorization: Bearer <key>``;
            empty means the collector accepts every request.
        snowplow_app_ids: App ids (``aid``) the Snowplow endpoints take events of (Snowplow
            trackers send no key); empty means the app id is not checked.
        snowplow_origins: Web origins (``https://host[:port]``) the Snowplow endpoints take
            browser requests from; empty means the origin is not checked.
        partitions: Partitions of the project's topics when they are created.
        retention_days: How many days of event time live state keeps behind the newest event.
        max_models: Model versions that get their own Prometheus label value; the rest fold
            into ``other``.
        worker_port: Web port of a stream worker.
        collector_port: HTTP port of the collector.
        state_dir: Local directory for worker state (Faust's data directory) and SDK spool
            files (default ``./data/state``).
        topic_prefix: Prefix of topic names and consumer group ids, so that several
            installations (or tests) can share one Kafka cluster.
        min_ts: The earliest event ``ts`` the contract accepts (tz-aware, kept in UTC); an
            RFC 3339 date-time in the environment. Lower it for older backfills.
        flattery_level: Significance level of each of the flattery watch's two one-sided
            tests (``usersignals.metrics.flattery``).
        flattery_min_votes: Thumbs votes a model needs in each of two weeks to be flagged.
        flattery_min_users: Active users a model needs in each of two weeks to be flagged.
        kafka_timeout_s: How long a command (``status``, ``deadletter replay``) waits for
            Kafka to answer before it fails.
        stop_grace_s: How long a long-running process (worker, loader) may take to stop
            cleanly after SIGTERM or SIGINT; then it exits without waiting for Kafka.
        log_repeat_s: The same warning or error (same logger, same message template) is
            logged at most once per this many seconds; the suppressed ones are counted.
        loader_retry_s: The loader's first pause after a write failed for want of disk space
            or an I/O error (``ENOSPC``, ``EIO``); each failure in a row doubles it.
        loader_restart_s: How long the worker waits before it restarts a loader that exited;
            each quick exit in a row doubles it.
        loader_backoff_cap_s: The longest of those pauses.
        loader_healthy_s: A loader that ran this long before it exited is restarted after
            ``loader_restart_s`` again (the doubling starts over).
        collector_header_timeout_s: How long the collector waits for a request's headers once
            its first byte came; then it answers 408 and closes the connection.
        collector_body_timeout_s: How long the collector waits for a whole request body once
            its headers came; then it answers 408 and closes the connection.
        collector_idle_timeout_s: How long a keep-alive connection may sit idle (no request
            started) before the collector closes it; a new connection counts as idle too.
        collector_max_connections: Open connections the collector holds at most; one more is
            answered 503 at once and closed, without reading it.
        collector_client_rate: Requests per second one client address may make (token
            bucket; 0 means no limit); beyond it, 429 with ``Retry-After``.
        collector_client_burst: Requests one client address may make at once (bucket size).
        collector_key_rate: Requests per second one write key may make (0 means no limit).
        collector_key_burst: Requests one write key may make at once (bucket size).
        collector_auth_fail_rate: Refused write keys per second one client address may send;
            beyond it, every request of that client with a key is 429 until the bucket refills.
        collector_auth_fail_burst: Refused write keys one client address may send at once.
    """

    bootstrap: str = "127.0.0.1:9092"
    warehouse: Path = field(default_factory=lambda: Path("data", "warehouse"))
    worker_url: str = "http://127.0.0.1:6066"
    write_keys: tuple[str, ...] = ()
    snowplow_app_ids: tuple[str, ...] = ()
    snowplow_origins: tuple[str, ...] = ()
    partitions: int = 8
    retention_days: int = 42
    max_models: int = 20
    worker_port: int = 6066
    collector_port: int = 8080
    state_dir: Path = field(default_factory=lambda: Path("data", "state"))
    topic_prefix: str = "usersignals"
    flattery_level: float = 0.05
    flattery_min_votes: int = 30
    flattery_min_users: int = 30
    min_ts: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    kafka_timeout_s: float = 10.0
    stop_grace_s: float = 30.0
    log_repeat_s: float = 10.0
    loader_retry_s: float = 1.0
    loader_restart_s: float = 1.0
    loader_backoff_cap_s: float = 60.0
    loader_healthy_s: float = 60.0
    collector_header_timeout_s: float = 10.0
    collector_body_timeout_s: float = 30.0
    collector_idle_timeout_s: float = 75.0
    collector_max_connections: int = 1000
    collector_client_rate: float = 200.0
    collector_client_burst: int = 400
    collector_key_rate: float = 200.0
    collector_key_burst: int = 400
    collector_auth_fail_rate: float = 1.0
    collector_auth_fail_burst: int = 20

    @property
    def events_topic(self) -> str:
        """The topic of events (``usersignals.events`` by default)."""
        return f"{self.topic_prefix}.events"

    @property
    def dead_topic(self) -> str:
        """The dead-letter topic (``usersignals.events.dead`` by default)."""
        return f"{self.topic_prefix}.events.dead"

    @property
    def topics(self) -> tuple[str, str]:
        return (self.events_topic, self.dead_topic)

    def state_path(self, name: str) -> Path:
        """``state_dir / name``, created with its parents when missing: one component's corner
        of the local state (``faust`` for the stream worker's data directory)."""
        path = self.state_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Builds settings from flags (those not ``None``), then environment, then defaults.

        Raises:
            ConfigError: a value from the environment or a flag cannot be used.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw: Any = flags.get(f.name)
            if raw is None and ENV_VARS.get(f.name, "") in env:
                raw = env[ENV_VARS[f.name]]
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, raw)
        settings = cls(**values)
        settings._check()
        return settings

    def to_env(self) -> dict[str, str]:
        """These settings as ``USERSIGNALS_*`` variables, for a child process (paths absolute)."""
        env: dict[str, str] = {}
        for name, var in ENV_VARS.items():
            value = getattr(self, name)
            if isinstance(value, Path):
                value = value.resolve()
            elif isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            env[var] = str(value)
        return env

    def with_(self, **changes: Any) -> Settings:
        """Returns a copy with some fields changed (checked like :meth:`load`)."""
        settings = replace(self, **{k: _coerce(k, v) for k, v in changes.items()})
        settings._check()
        return settings

    def _check(self) -> None:
        if not self.topic_prefix or not all(c.isalnum() or c in "._-" for c in self.topic_prefix):
            raise ConfigError("topic_prefix", self.topic_prefix, "letters, digits, '.', '_', '-'")
        if not self.bootstrap.strip():
            raise ConfigError("bootstrap", self.bootstrap, "empty")
        if not 0.0 < self.flattery_level < 0.5:
            raise ConfigError("flattery_level", self.flattery_level, "must be between 0 and 0.5")
        for name in (
            "kafka_timeout_s",
            "stop_grace_s",
            "log_repeat_s",
            *_LOADER_TIMES,
            *_COLLECTOR_TIMEOUTS,
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "must be more than 0 seconds")
        for name in _COLLECTOR_RATES:
            if not getattr(self, name) >= 0:
                raise ConfigError(name, getattr(self, name), "must be 0 (no limit) or more")
        for name in (
            "partitions",
            "retention_days",
            "max_models",
            "flattery_min_votes",
            "flattery_min_users",
            *_COLLECTOR_COUNTS,
        ):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be at least 1")
        for name in ("worker_port", "collector_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(name, getattr(self, name), "not a TCP port")


def _coerce(name: str, raw: Any) -> Any:
    if name in ("warehouse", "state_dir"):
        return Path(raw)
    if name in ("write_keys", "snowplow_app_ids"):
        if isinstance(raw, str):
            return tuple(k.strip() for k in raw.split(",") if k.strip())
        return tuple(raw)
    if name == "snowplow_origins":
        items = raw.split(",") if isinstance(raw, str) else raw
        return tuple(o.strip().rstrip("/") for o in items if o.strip())
    if name in (
        "flattery_level",
        "kafka_timeout_s",
        "stop_grace_s",
        "log_repeat_s",
        *_LOADER_TIMES,
        *_COLLECTOR_TIMEOUTS,
        *_COLLECTOR_RATES,
    ):
        if isinstance(raw, bool):
            raise ConfigError(name, raw, "not a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(name, raw, "not a number") from None
    if name in (
        "partitions",
        "retention_days",
        "max_models",
        "worker_port",
        "collector_port",
        "flattery_min_votes",
        "flattery_min_users",
        *_COLLECTOR_COUNTS,
    ):
        if isinstance(raw, bool):
            raise ConfigError(name, raw, "not a whole number")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(name, raw, "not a whole number") from None
    if name == "min_ts":
        return _moment(name, raw)
    return str(raw)


def _moment(name: str, raw: Any) -> datetime:
    """An RFC 3339 date-time with an offset (or an aware datetime), in UTC."""
    if isinstance(raw, datetime):
        moment = raw
    else:
        try:
            moment = datetime.fromisoformat(str(raw))
        except ValueError:
            raise ConfigError(name, raw, "not an RFC 3339 date-time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigError(name, raw, "no UTC offset; add 'Z' or '+HH:MM'")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ConfigError(name, raw, "out of range") from None
