"""The one frozen Config: built-in defaults, then a TOML file, then CLAWGUARD_<SECTION>_<KEY>.

An unknown key or a bad value raises ConfigError naming the key, so the
daemon never starts on a setting it would silently ignore.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import pydantic

from clawguard.core import errors, pricing
from clawguard.core import events as public_events
from clawguard.core import runs as run_rules
from clawguard.core import webhooks as webhook_rules

ENV_PREFIX = "CLAWGUARD_"
ADMIN_KEY_FILE = "clawguard-admin.key"
_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")
_ENGINE_PREFIXES = (_SQLITE_PREFIX, *_POSTGRES_PREFIXES)
CONFIG_ENV = "CLAWGUARD_CONFIG"


class _Section(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = pydantic.Field(default=18790, ge=0, le=65535)
    shutdown_timeout_ms: int = pydantic.Field(default=10_000, gt=0)
    client_timeout_ms: int = pydantic.Field(default=30_000, gt=0)


class StorageConfig(_Section):
    """`url` chooses the engine and wins over `path`: a bare path or sqlite:///PATH is
    SQLite (the embedded default), postgresql://... or postgres://... is PostgreSQL."""

    path: str = "clawguard.db"
    url: str | None = None
    busy_timeout_ms: int = pydantic.Field(default=5_000, ge=0)
    batch_max: int = pydantic.Field(default=256, ge=1, le=10_000)
    pool_size: int = pydantic.Field(default=10, ge=1, le=1_000)  # PostgreSQL connections
    # How often the ledger's running digest is written into the audit chain.
    ledger_checkpoint_ms: int = pydantic.Field(default=60_000, ge=1_000, le=86_400_000)

    @pydantic.field_validator("url")
    @classmethod
    def _known_engine(cls, url: str | None) -> str | None:
        if url is not None and "://" in url and not url.startswith(_ENGINE_PREFIXES):
            raise ValueError("must be a file path, sqlite:///PATH, or postgresql://...")
        return url

    @property
    def engine(self) -> Literal["sqlite", "postgres"]:
        return "postgres" if self.url and self.url.startswith(_POSTGRES_PREFIXES) else "sqlite"

    @property
    def location(self) -> str:
        """The SQLite file's path, or the PostgreSQL url."""
        if self.url is None:
            return self.path
        return self.url.removeprefix(_SQLITE_PREFIX) if self.engine == "sqlite" else self.url


class AuthConfig(_Section):
    mode: Literal["keys", "none"] = "keys"
    cache_ms: int = pydantic.Field(default=1_000, ge=0, le=60_000)
    # Refused calls are counted in memory and audited as one row per (reason, key or
    # address) this often, so that a flood of bad keys is not a flood of writes.
    refusal_audit_ms: int = pydantic.Field(default=10_000, gt=0, le=3_600_000)
    # How often the keys' lastUsedAt, kept in memory, is written: once a period at most.
    last_used_flush_ms: int = pydantic.Field(default=60_000, ge=1_000, le=3_600_000)
    # Where the first-start admin key goes; default: next to a SQLite database, else
    # clawguard-admin.key in the working directory.
    key_file: str | None = None


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"


class ApprovalsConfig(_Section):
    """The three timers of the approval handshake, kept apart (README: Approvals)."""

    ttl_ms: int = pydantic.Field(default=300_000, gt=0)  # a request's time to live
    wait_ms: int = pydantic.Field(default=120_000, gt=0)  # the longest one call waits
    sweep_ms: int = pydantic.Field(default=1_000, gt=0)  # the reaper's period
    sticky_ttl_ms: int = pydantic.Field(default=0, ge=0)  # 0: grants never expire


Usd = Annotated[Decimal, pydantic.PlainValidator(pricing.usd)]
ModelName = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=200)]


class PriceConfig(_Section):
    """[prices."MODEL"]: US dollars per million tokens, decimal strings or numbers."""

    input_per_mtok_usd: Usd
    output_per_mtok_usd: Usd

    def price(self) -> pricing.Price:
        return pricing.Price(self.input_per_mtok_usd, self.output_per_mtok_usd)


class HoldsConfig(_Section):
    # A hold's time to live when its request names no ttlMs (at most 24 h, as a request's).
    ttl_ms: int = pydantic.Field(default=600_000, gt=0, le=24 * 3_600_000)


class RunsConfig(_Section):
    lease_ms: int = pydantic.Field(default=3_600_000, gt=0)  # renewed by every event


class PlanConfig(_Section):
    runs_per_hour: int = pydantic.Field(default=300, gt=0)
    concurrent_runs: int = pydantic.Field(default=10, gt=0)


class QuotasConfig(_Section):
    """Every tenant is on `plan`; its defaults are `plans[plan]`, under each tenant's overrides."""

    plan: str = "default"
    plans: dict[str, PlanConfig] = pydantic.Field(
        default_factory=lambda: {"default": PlanConfig()}
    )

    @pydantic.model_validator(mode="after")
    def _plan_exists(self) -> QuotasConfig:
        if self.plan not in self.plans:
            raise ValueError(f"plan {self.plan!r} is not among quotas.plans")
        return self

    def defaults(self) -> dict[str, int]:
        return self.plans[self.plan].model_dump()


class BreakersConfig(_Section):
    max_tool_iterations: int = pydantic.Field(default=30, gt=0)
    repeat_failure_threshold: int = pydantic.Field(default=3, gt=0)
    no_progress_threshold: int = pydantic.Field(default=6, gt=0)
    token_velocity_ceiling: int = pydantic.Field(default=200_000, gt=0)
    velocity_min_window_ms: int = pydantic.Field(default=15_000, gt=0)
    repeat_policy_denied_threshold: int = pydantic.Field(default=2, gt=0)


class DelegationConfig(_Section):
    max_depth: int = pydantic.Field(default=2, ge=0)
    max_children: int = pydantic.Field(default=24, ge=0)
    max_root_runs: int = pydantic.Field(default=30, ge=0)
    root_window_ms: int = pydantic.Field(default=300_000, gt=0)


class WebhookConfig(_Section):
    """[[notify.webhooks]]: where the chosen events are POSTed, signed with `secret`."""

    url: str
    events: list[public_events.EventName] = pydantic.Field(
        default_factory=lambda: cast(list[public_events.EventName],
                                     list(public_events.EVENT_NAMES)), min_length=1)
    # Shown masked by `clawguard check-config`.
    secret: pydantic.SecretStr | None = pydantic.Field(default=None, min_length=1)
    format: Literal["json", "slack"] = "json"

    @pydantic.field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")) or len(url) < 10:
            raise ValueError("must be an http:// or https:// url")
        return url

    @pydantic.model_validator(mode="after")
    def _signed(self) -> WebhookConfig:
        if self.format == "json" and self.secret is None:
            raise ValueError("a json webhook needs a secret to sign its bodies with")
        return self

    @property
    def id(self) -> str:
        return webhook_rules.webhook_id(self.url)


class NotifyConfig(_Section):
    """Webhooks (README: Notifications); the retry timings are settings so tests can shrink
    them."""

    # The console link in Slack messages; default: the listen address plus /console.
    console_url: str | None = None
    webhooks: list[WebhookConfig] = []
    timeout_ms: int = pydantic.Field(default=10_000, gt=0, le=300_000)
    retry_min_ms: int = pydantic.Field(default=1_000, gt=0)
    retry_max_ms: int = pydantic.Field(default=300_000, gt=0)
    give_up_ms: int = pydantic.Field(default=86_400_000, gt=0)

    @pydantic.model_validator(mode="after")
    def _distinct(self) -> NotifyConfig:
        if len({hook.url for hook in self.webhooks}) != len(self.webhooks):
            raise ValueError("two webhooks have the same url")
        if self.retry_max_ms < self.retry_min_ms:
            raise ValueError("retry_max_ms is below retry_min_ms")
        return self

    def backoff(self) -> webhook_rules.Backoff:
        return webhook_rules.Backoff(self.retry_min_ms, self.retry_max_ms, self.give_up_ms)


class Config(_Section):
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    auth: AuthConfig = AuthConfig()
    log: LogConfig = LogConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    prices: dict[ModelName, PriceConfig] = {}

    def price_table(self) -> dict[str, pricing.Price]:
        """The bundled prices, overridden and extended by [prices."MODEL"]."""
        return pricing.table({model: entry.price() for model, entry in self.prices.items()})
    holds: HoldsConfig = HoldsConfig()
    runs: RunsConfig = RunsConfig()
    quotas: QuotasConfig = QuotasConfig()
    breakers: BreakersConfig = BreakersConfig()
    delegation: DelegationConfig = DelegationConfig()
    notify: NotifyConfig = NotifyConfig()

    @property
    def console_url(self) -> str:
        """notify.console_url, else the listen address plus /console."""
        if self.notify.console_url is not None:
            return self.notify.console_url
        host = self.server.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.server.port}/console"

    def run_rules(self) -> run_rules.Rules:
        return run_rules.Rules(
            lease_ms=self.runs.lease_ms,
            breakers=run_rules.Breakers(**self.breakers.model_dump()),
            delegation=run_rules.Delegation(**self.delegation.model_dump()),
        )

    @property
    def admin_key_file(self) -> Path:
        """Where the first-start admin key is written: auth.key_file, else next to a SQLite
        database, else in the working directory."""
        if self.auth.key_file is not None:
            return Path(self.auth.key_file)
        if self.storage.engine == "sqlite":
            return Path(self.storage.location).resolve().parent / ADMIN_KEY_FILE
        return Path(ADMIN_KEY_FILE).resolve()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> (
    Config
):
    """Read the config file (`path`, else $CLAWGUARD_CONFIG, else none) and the environment."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            # Floats as Decimal: a price of 0.15 is exactly 0.15, never a binary fraction.
            raw = tomllib.loads(Path(path).read_text(), parse_float=Decimal)
        except OSError as exc:
            raise errors.ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise errors.ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    _apply_environment(raw, environ)
    try:
        cfg = Config.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        problem = first["msg"]
        if first["type"] == "extra_forbidden":  # pydantic says "Extra inputs are not permitted"
            problem = "clawguard has no such setting (config.example.toml lists them all)"
        raise errors.ConfigError(f"bad setting {key}: {problem}") from exc
    if cfg.auth.mode == "none" and not is_loopback(cfg.server.host):
        raise errors.ConfigError(
            f'bad setting auth.mode: "none" lets anyone spend and resume, so it is only allowed'
            f" on a loopback address, and server.host is {cfg.server.host}"
        )
    return cfg


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    sections = Config.model_fields
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in sections:
            continue  # CLAWGUARD_URL and friends belong to the client, not the daemon
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise errors.ConfigError(f"bad setting {section}: must be a table")
        table[key] = value
