"""Settings from ``LEASEHOLD_*`` environment variables (workflow-graph's names accepted too)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    namespace: str = Field(
        default="lh", pattern=r"^[A-Za-z0-9_.-]{1,32}$", validation_alias=_env("NAMESPACE")
    )
    host: str = Field(default="127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(default=8080, ge=0, le=65535, validation_alias=_env("PORT", "PORT"))
    admin_token: str | None = Field(default=None, validation_alias=_env("ADMIN_TOKEN"))
    metrics_token: str | None = Field(default=None, validation_alias=_env("METRICS_TOKEN"))
    auth: bool = Field(default=True, validation_alias=_env("AUTH"))
    allow_insecure: bool = Field(default=False, validation_alias=_env("ALLOW_INSECURE"))
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
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$",
                            validation_alias=_env("LOG_FORMAT"))
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
