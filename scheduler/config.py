"""Settings from ``LEASEHOLD_*`` environment variables (workflow-graph's names accepted too)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from cryptography.fernet import Fernet
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "json", "console")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
SENTINEL_PORT = 26379


def _env(name: str, *seed_names: str) -> AliasChoices:
    return AliasChoices(f"LEASEHOLD_{name}", *seed_names)


class Settings(BaseSettings):
    """Every knob of the service, its reaper and its agents, by its documented name."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(default=None, validation_alias=_env("REDIS_URL"))
    redis_max_connections: int = Field(
        default=10, ge=2, le=10_000, validation_alias=_env("REDIS_MAX_CONNECTIONS")
    )
    redis_cluster: bool = Field(default=False, validation_alias=_env("REDIS_CLUSTER"))
    redis_wait_secs: float = Field(
        default=30.0, ge=0, le=3600, validation_alias=_env("REDIS_WAIT_SECS")
    )
    embedded: bool = Field(default=True, validation_alias=_env("EMBEDDED"))
    namespace: str = Field(
        default="lh", pattern=r"^[A-Za-z0-9_.-]{1,32}$", validation_alias=_env("NAMESPACE")
    )
    host: str = Field(default="127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(default=8080, ge=0, le=65535, validation_alias=_env("PORT", "PORT"))
    admin_token: str | None = Field(default=None, validation_alias=_env("ADMIN_TOKEN"))
    metrics_token: str | None = Field(default=None, validation_alias=_env("METRICS_TOKEN"))
    auth: bool = Field(default=True, validation_alias=_env("AUTH"))
    auth_cache_secs: float = Field(default=5.0, ge=0, le=60,
                                   validation_alias=_env("AUTH_CACHE_SECS"))
    allow_insecure: bool = Field(default=False, validation_alias=_env("ALLOW_INSECURE"))
    # The longest one request is held open: long-poll claims answer empty, sync results 202 and
    # event streams end (their client resumes with Last-Event-ID) by then; unset: no cap.
    max_hold_secs: float | None = Field(default=None, gt=0, le=3600,
                                        validation_alias=_env("MAX_HOLD_SECS"))
    reap_interval_secs: float = Field(
        default=1.0, gt=0, le=3600,
        validation_alias=_env("REAP_INTERVAL_SECS", "REAP_INTERVAL_SECS"),
    )
    reap_batch: int = Field(default=1000, ge=1, le=100_000, validation_alias=_env("REAP_BATCH"))
    worker_offline_secs: float = Field(
        default=60.0, gt=0, validation_alias=_env("WORKER_OFFLINE_SECS")
    )
    worker_retention_secs: float = Field(
        default=7 * 86400, gt=0, validation_alias=_env("WORKER_RETENTION_SECS")
    )
    workflows_dir: str | None = Field(
        default=None, validation_alias=_env("WORKFLOWS_DIR", "WORKFLOWS_DIR")
    )
    cors_origins: str | None = Field(
        default=None, validation_alias=_env("CORS_ORIGINS", "CORS_ORIGINS")
    )
    auth_failures_per_minute: int = Field(
        default=30, ge=1, validation_alias=_env("AUTH_FAILURES_PER_MINUTE")
    )
    log_level: str = Field(default="info", validation_alias=_env("LOG_LEVEL"))
    log_format: str = Field(default="auto", validation_alias=_env("LOG_FORMAT"))
    result_ttl_secs: float = Field(
        default=7 * 86400, gt=0, validation_alias=_env("RESULT_TTL_SECS")
    )
    queue_idle_secs: float = Field(
        default=86400.0, ge=0, validation_alias=_env("QUEUE_IDLE_SECS")
    )
    events_maxlen: int = Field(default=10_000, ge=100, validation_alias=_env("EVENTS_MAXLEN"))
    log_maxlen: int = Field(default=100_000, ge=10, validation_alias=_env("LOG_MAXLEN"))
    log_max_bytes: int = Field(default=16 << 20, ge=1024, validation_alias=_env("LOG_MAX_BYTES"))
    default_lease_ttl_secs: float = Field(
        default=30.0, gt=0, le=86400, validation_alias=_env("LEASE_TTL_SECS")
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, validation_alias=_env("MAX_BODY_BYTES")
    )
    # artifacts and webhook result delivery
    artifact_max_bytes: int = Field(
        default=50 << 20, ge=1, validation_alias=_env("ARTIFACT_MAX_BYTES")
    )
    artifact_quota_bytes: int = Field(
        default=1 << 30, ge=1, validation_alias=_env("ARTIFACT_QUOTA_BYTES")
    )
    artifact_dir: str | None = Field(default=None, validation_alias=_env("ARTIFACT_DIR"))
    webhook_secret: str | None = Field(default=None, validation_alias=_env("WEBHOOK_SECRET"))
    webhook_allow_private: bool = Field(
        default=False, validation_alias=_env("WEBHOOK_ALLOW_PRIVATE")
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, validation_alias=_env("WEBHOOK_MAX_ATTEMPTS")
    )
    webhook_retry_base_secs: float = Field(
        default=2.0, gt=0, le=3600, validation_alias=_env("WEBHOOK_RETRY_BASE_SECS")
    )
    webhook_timeout_secs: float = Field(
        default=5.0, gt=0, le=60, validation_alias=_env("WEBHOOK_TIMEOUT_SECS")
    )
    webhook_poll_secs: float = Field(
        default=1.0, gt=0, le=60, validation_alias=_env("WEBHOOK_POLL_SECS")
    )
    shutdown_grace_secs: float = Field(
        default=10.0, gt=0, le=3600, validation_alias=_env("SHUTDOWN_GRACE_SECS")
    )
    reaper_health_port: int | None = Field(
        default=None, ge=0, le=65535, validation_alias=_env("REAPER_HEALTH_PORT")
    )
    reaper_stale_secs: float = Field(
        default=30.0, gt=0, le=86400, validation_alias=_env("REAPER_STALE_SECS")
    )

    secrets_key: str | None = Field(default=None, validation_alias=_env("SECRETS_KEY"))
    secrets_key_previous: str | None = Field(
        default=None, validation_alias=_env("SECRETS_KEY_PREVIOUS")
    )

    @field_validator("secrets_key", "secrets_key_previous")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        for key in (value or "").split(","):
            if key.strip():
                try:
                    Fernet(key.strip())
                except ValueError:
                    raise ValueError("must be Fernet keys (url-safe base64 of 32 bytes), "
                                     "comma-separated; `leasehold secrets keygen` makes one"
                                     ) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError("must be one of " + ", ".join(LOG_LEVELS))
        return value.lower()

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value.lower() not in LOG_FORMATS:
            raise ValueError("must be one of " + ", ".join(LOG_FORMATS))
        return value.lower()

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_redis_url(value)
        return value


def check_redis_url(url: str) -> None:
    """Raises ValueError naming what is wrong with a Redis URL this service cannot use."""
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError("must start with " + ", ".join(f"{s}://" for s in REDIS_SCHEMES))
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis.sock")
    elif parts.scheme == "redis+sentinel":
        sentinel_parts(url)
    else:
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValueError("has a port that is not a number in 0-65535") from None
        if not parts.hostname:
            raise ValueError("names no host, e.g. redis://localhost:6379/0")


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """``redis+sentinel://[:password@]host[:port],host[:port]/master-name[/db]``: the sentinels,
    the master's name and the database number."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = port, str(SENTINEL_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("needs sentinels as host:port,host:port (got "
                             f"{item.strip() or 'nothing'!r})")
        sentinels.append((host.strip("[]"), int(port)))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("needs the master's name after the sentinels, e.g. "
                         "redis+sentinel://s1:26379,s2:26379/mymaster")
    return sentinels, path[0], int(path[1]) if len(path) == 2 else 0
