"""Settings of the aggregator, the participant and the operator.

Each service reads ``CRUCIBLE_*`` environment variables (nested fields with ``__``, for
example ``CRUCIBLE_POLICY__MIN_ROWS``) and, optionally, a YAML file named by
``CRUCIBLE_CONFIG_FILE``; the environment wins over the file. Every field states its
unit, default and reason. A wrong value fails at start with the setting's name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from crucible.errors import InputError
from crucible.transport import TlsFiles


class _YamlFileSource(PydanticBaseSettingsSource):
    """Values from the YAML file named by CRUCIBLE_CONFIG_FILE, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("CRUCIBLE_CONFIG_FILE")
        if not path:
            return {}
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InputError(
                f"CRUCIBLE_CONFIG_FILE {path}: cannot be read: {error}"
            ) from error
        if not isinstance(loaded, dict):
            raise InputError(
                f"CRUCIBLE_CONFIG_FILE {path}: expected a mapping at the top"
            )
        return loaded


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRUCIBLE_", env_nested_delimiter="__", extra="ignore"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Settings from overrides, environment and file; errors name the setting."""
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as error:
            problems = "; ".join(
                f"CRUCIBLE_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                f" (found {e.get('input')!r})"
                for e in error.errors()
            )
            raise InputError(
                f"settings: {problems}; the service does not start"
            ) from error


class TlsSettings(BaseModel):
    certificate: Path = Field(description="PEM certificate of this service (tls.crt).")
    key: Path = Field(description="PEM private key of this service (tls.key).")
    ca: Path = Field(
        description="PEM certificate of the federation CA (ca.crt) it trusts."
    )

    def files(self) -> TlsFiles:
        for name in ("certificate", "key", "ca"):
            path = getattr(self, name)
            if not Path(path).is_file():
                raise InputError(
                    f"CRUCIBLE_TLS__{name.upper()}: expected a readable PEM file, "
                    f"found nothing at {path}; the service does not start"
                )
        return TlsFiles(Path(self.certificate), Path(self.key), Path(self.ca))


class AggregatorSettings(_Settings):
    listen: str = Field(
        "0.0.0.0:7443",
        description="host:port of the mutual-TLS gRPC port (participants and admin).",
    )
    metrics_listen: str = Field(
        "0.0.0.0:9464", description="host:port of the plain-HTTP /metrics endpoint."
    )
    state_dir: Path = Field(
        Path("/var/lib/crucible"),
        description="Directory for the SQLite state, received updates and checkpoints; "
        "a persistent volume, since a restarted aggregator resumes from it.",
    )
    tls: TlsSettings
    max_update_bytes: int = Field(
        2 << 30,
        gt=0,
        description="Largest update accepted, in bytes (default 2 GiB); bigger ones are "
        "refused before their data is read.",
    )
    long_poll_seconds: float = Field(
        20.0, gt=0, description="Longest a GetTask call is held waiting for work (s)."
    )
    lost_after_seconds: float = Field(
        90.0,
        gt=0,
        description="Silence after which a participant counts as Lost (s); heartbeats "
        "during long local training keep it alive.",
    )
    workers: int = Field(
        256,
        ge=8,
        description="gRPC worker threads; each waiting participant holds one.",
    )
    keepalive_seconds: float = Field(
        30.0, gt=0, description="HTTP/2 ping interval (s)."
    )
    min_free_bytes: int = Field(
        256 << 20,
        ge=0,
        description="Free space the state directory must keep (bytes, default 256 MiB); "
        "below it new work is refused until space returns.",
    )


class DatasetSettings(BaseModel):
    train: Path = Field(description="CSV or Parquet table the participant trains on.")
    evaluation: Path | None = Field(
        None,
        description="Held-out CSV or Parquet table for evaluating the global model; "
        "without it, evaluation uses the training table.",
    )


class PolicySettings(BaseModel):
    accepted_runs: list[str] = Field(
        default=["*"],
        description="Glob patterns of run names (namespace/name) the organization "
        "joins; others are refused with a reason.",
    )
    min_rows: int = Field(
        20,
        ge=1,
        description="Fewest rows the organization shares statistics for; fewer rows "
        "would let the sums reveal individual tests.",
    )
    max_rounds: int = Field(1000, ge=1, description="Most rounds of a run it joins.")
    max_local_epochs: int = Field(100, ge=1, description="Most local epochs per round.")


class ParticipantSettings(_Settings):
    aggregator: str = Field(description="host:port of the aggregator's gRPC port.")
    server_name: str | None = Field(
        None,
        description="Name expected in the aggregator's certificate, when the address "
        "is not that name (a load balancer's IP, say).",
    )
    tls: TlsSettings
    datasets: dict[str, DatasetSettings] = Field(
        default_factory=dict,
        description="Tables by name; a run's task picks one by name, '' picks 'default'.",
    )
    policy: PolicySettings = Field(default_factory=PolicySettings)
    metrics_listen: str = Field(
        "0.0.0.0:9465", description="host:port of the plain-HTTP /metrics endpoint."
    )
    poll_seconds: float = Field(
        20.0, gt=0, description="Long-poll wait asked of the aggregator (s)."
    )
    heartbeat_seconds: float = Field(
        15.0, gt=0, description="Heartbeat interval while training or evaluating (s)."
    )
    keepalive_seconds: float = Field(
        30.0, gt=0, description="HTTP/2 ping interval (s)."
    )
    backoff_initial_seconds: float = Field(
        0.5, gt=0, description="First reconnection delay (s); doubles, with jitter."
    )
    backoff_max_seconds: float = Field(30.0, gt=0, description="Longest delay (s).")
    torch_threads: int = Field(1, ge=1, description="CPU threads torch may use.")
    once: bool = Field(
        False, description="Exit after the first run ends instead of waiting for more."
    )


class OperatorSettings(_Settings):
    aggregator: str = Field(
        "crucible-aggregator:7443",
        description="host:port of the aggregator's gRPC port.",
    )
    server_name: str | None = Field(
        None, description="Name expected in the aggregator's certificate."
    )
    tls: TlsSettings
    namespace: str | None = Field(
        None, description="Namespace to watch; empty watches all namespaces."
    )
    metrics_listen: str = Field(
        "0.0.0.0:9466", description="host:port of the plain-HTTP /metrics endpoint."
    )
    watch_timeout_seconds: int = Field(
        300,
        gt=0,
        description="Server-side timeout of Kubernetes watches (s), so a silent stream "
        "is noticed and restarted.",
    )
    retry_seconds: float = Field(
        5.0,
        gt=0,
        description="First delay before retrying an unreachable aggregator (s).",
    )
    retry_max_seconds: float = Field(
        300.0,
        gt=0,
        description="Longest delay between retries (s); the delay doubles up to it.",
    )
    run_watch_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest the aggregator's watch stream of a run may stay silent "
        "before the operator re-opens it (s); a vanished aggregator is noticed then.",
    )
    request_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Deadline of each call to the aggregator or the Kubernetes API (s).",
    )
