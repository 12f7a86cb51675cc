"""Daemon and tenant configuration: YAML files validated with pydantic.

Layout (paths in the daemon config are relative to the daemon config file)::

    config/syncd.yaml            database_url, interval, tenants_dir, salesbooks_dir, ...
    config/tenants/<key>.yaml    one tenant: plugin, connection, salesbook, mapping, write-back
    config/salesbooks/<key>.yaml one Sales Book (see syncd.salesbook)

Secrets are never needed in a file: any connection value may be ``{$env: NAME}`` or
``{$file: path}``; keys a connector declares secret *must* be given that way (an inline
secret is a warning). Every problem names the file and the dotted key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from syncd import secrets
from syncd.audit.facts import DEFERRED
from syncd.audit.registry import CustomRule, RuleRegistry, unknown_name_message
from syncd.audit.rules import RULE_CODES
from syncd.connector import ConnectionSettings, Connector, ConnectorState
from syncd.digest_config import DigestsConfig, inline_secrets
from syncd.errors import ConfigError, ConfigProblem, PluginError
from syncd.i18n import Text, TitleText
from syncd.oauth import TokenCipher, TokenStore, load_cipher
from syncd.plugins import ConnectorRegistry
from syncd.salesbook import SalesBook, load_salesbook, problems_from_validation, read_yaml
from syncd.sinks import SinkRegistry
from syncd.store.budget import share_rate_budgets
from syncd.store.db import Database

DEFAULT_CONFIG = Path("config/syncd.yaml")
CANONICAL_DEAL_FIELDS = ("lead_source", "profit", "is_tender", "public_incident",
                         "snooze_until", "snooze_reason")
CANONICAL_COMPANY_FIELDS = ("segment", "nps", "public_incidents", "channel", "sub_channel",
                            "region")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Model):
    """The daemon's HTTP side: dashboard, /healthz, /readyz, /metrics, CRM webhooks."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    #: Required when ``host`` is not a loopback address: a token for the dashboard and the
    #: metrics (``{$env: NAME}`` or ``{$file: path}``; sent as a bearer token or password).
    auth_token: Any = None


class ReplicaConfig(_Model):
    """Scale-out: how this replica claims tenants (leases in the database, see syncd.lease).

    Several replicas need PostgreSQL; on SQLite a second replica is refused."""

    #: A claimed tenant is ours this long without a renewal; a dead replica's tenants are
    #: taken over after it. Longer than the slowest page plus its commit.
    lease_seconds: float = Field(default=90, gt=0)
    #: Renewal period (default: a quarter of the lease).
    heartbeat_seconds: float | None = Field(default=None, gt=0)
    #: How often the scheduler looks for due tenants (also bounds takeover latency).
    poll_seconds: float = Field(default=5, gt=0)
    #: Tenant passes run at once by this replica.
    workers: int = Field(default=1, ge=1, le=64)
    #: Run each of those passes in a worker process of its own (a pool of ``workers``
    #: processes, started once; ``syncd.pass_pool``) instead of a thread of the replica's
    #: process: Python runs one thread at a time per process, so this is how one replica
    #: uses more than one core (SQLite included).
    worker_processes: bool = False
    #: Webhook calls for one tenant within this window trigger one pass.
    webhook_debounce_seconds: float = Field(default=5, ge=0)
    #: SIGTERM: seconds to finish the pages in flight before exiting anyway.
    drain_seconds: float = Field(default=20, gt=0)

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 4


class DigestTimerConfig(_Model):
    """The daemon's digest timer (docs/digests.md); what and when is in each tenant file."""

    #: How often each replica looks for due digests.
    check_seconds: float = Field(default=60, gt=0)
    #: A claimed digest is the claimer's this long; after that (it died between claim and
    #: send) another replica sends it.
    claim_seconds: float = Field(default=300, gt=0)
    #: Delivery rows are kept this long (the retention timer prunes older ones daily).
    retention_days: int = Field(default=400, ge=60)


class DaemonConfig(_Model):
    database_url: str = "sqlite:///../var/syncd.db"
    interval_minutes: int = Field(default=15, ge=1)
    overlap_minutes: int = Field(default=10, ge=0)
    #: `syncd run` rewrites a tenant's report file at most this often when passes only
    #: changed data (0: after every pass that changed something). See docs/operations.md.
    report_minutes: int = Field(default=60, ge=0)
    tenants_dir: str = "tenants"
    salesbooks_dir: str = "salesbooks"
    reports_dir: str = "../var/reports"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Fernet key for OAuth tokens at rest (``SYNCD_SECRET_KEY`` wins); created if missing.
    secret_key_file: str = "../var/secret.key"  # noqa: S105 - a path, not a secret
    http: HttpConfig = Field(default_factory=HttpConfig)
    replica: ReplicaConfig = Field(default_factory=ReplicaConfig)
    digests: DigestTimerConfig = Field(default_factory=DigestTimerConfig)


class FieldMapping(_Model):
    #: canonical key -> CRM field name; ``null``: the CRM has no such field (docs/config.md:
    #: a Sales Book action evidenced only by it is not audited, and the report says so).
    deal: dict[str, str | None] = Field(default_factory=dict)
    company: dict[str, str | None] = Field(default_factory=dict)
    contact: dict[str, str | None] = Field(default_factory=dict)

    def absent(self, entity: str = "deal") -> frozenset[str]:
        """The canonical keys mapped to ``null`` (the CRM has no such field)."""
        return frozenset(k for k, name in getattr(self, entity).items() if name is None)


class Team(_Model):
    manager: str  # a CRM user id, e-mail or name
    members: list[str]


#: The word that (like YAML ``null``) marks a CRM stage or loss reason as deliberately ignored.
IGNORE = "ignore"


def _ignore_to_none(targets: dict[str, str | None]) -> dict[str, str | None]:
    return {crm: None if target is None or target.strip().casefold() == IGNORE else target
            for crm, target in targets.items()}


class Mapping(_Model):
    #: CRM pipeline name -> CRM stage name -> canonical stage key, ``deferred``, or
    #: ``null``/``ignore`` (open deals in that stage are left out of the audit and karma).
    stages: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    #: CRM loss reason text -> catalogue key, or ``null``/``ignore`` (deals lost with that
    #: reason, e.g. duplicates or spam, are left out of the audit and karma).
    loss_reasons: dict[str, str | None] = Field(default_factory=dict)
    #: CRM activity type key -> canonical kind (unlisted types keep their own key).
    activity_types: dict[str, str] = Field(default_factory=dict)
    fields: FieldMapping = Field(default_factory=FieldMapping)
    teams: list[Team] = Field(default_factory=list)
    #: CRM value of the company ``segment`` field -> segment key (case and surrounding
    #: spaces ignored); a value not listed keeps its own text as its key.
    segments: dict[str, str] = Field(default_factory=dict)

    @field_validator("stages")
    @classmethod
    def _stage_ignores(cls, stages: dict[str, dict[str, str | None]],
                       ) -> dict[str, dict[str, str | None]]:
        return {pipeline: _ignore_to_none(names) for pipeline, names in stages.items()}

    @field_validator("loss_reasons")
    @classmethod
    def _reason_ignores(cls, reasons: dict[str, str | None]) -> dict[str, str | None]:
        return _ignore_to_none(reasons)


class WritebackConfig(_Model):
    enabled: bool = True
    company_karma_field: str = "syncd karma"
    deal_violations_field: str = "syncd violations"
    create_tasks: bool = False
    task_rules: list[str] = Field(default_factory=lambda: [
        "missing_action", "stalled", "inactive", "no_next_step", "deferred_no_reminder",
        "won_no_followup", "bad_loss_reason",
    ])
    task_due_days: int = Field(default=1, ge=0)
    max_writes_per_run: int = Field(default=1000, ge=1)
    #: The CRM activity/task type key syncd's tasks are created with (the keys of
    #: ``mapping.activity_types``, e.g. amoCRM ``task_4``, Pipedrive ``task``). Default: the
    #: type the mapping maps to the kind ``task``, else the plugin's plain task (see
    #: docs/config.md). Never counts as work either way: syncd's tasks carry a marker.
    task_type: str | None = None

    def effective_task_type(self, activity_types: dict[str, str]) -> str | None:
        """``task_type``, or the first CRM type mapped to the kind ``task``, or None."""
        if self.task_type:
            return self.task_type
        return next((key for key, kind in activity_types.items() if kind == "task"), None)


class TenantConfig(_Model):
    plugin: str
    salesbook: str
    connection: dict[str, Any]
    timezone: str = "UTC"
    currency: str = "EUR"
    language: Literal["en", "ru"] = "en"
    enabled: bool = True
    interval_minutes: int | None = Field(default=None, ge=1)
    #: Overrides the daemon's ``report_minutes`` for this tenant.
    report_minutes: int | None = Field(default=None, ge=0)
    mapping: Mapping = Field(default_factory=Mapping)
    writeback: WritebackConfig = Field(default_factory=WritebackConfig)
    #: Report sinks: sink name -> its options (``gsheets: {spreadsheet_id: ..., ...}``).
    #: Values may use $env/$file; each sink plugin validates its own options.
    reports: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: Custom rules (registered by plugins) switched on or off: rule code -> true/false;
    #: a rule not named here follows its plugin's default. See docs/plugins.md.
    rules: dict[str, bool] = Field(default_factory=dict)
    #: Shared secret of this tenant's CRM webhooks (``{$env: NAME}`` / ``{$file: path}``);
    #: without it the tenant's webhook endpoint answers 404. See docs/operations.md.
    webhook_secret: Any = None
    #: Weekly digests to managers, monthly to the director (docs/digests.md).
    digests: DigestsConfig | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            message = Text("unknown timezone {value!r} (use an IANA name like Europe/Moscow)",
                           value=value)
            raise ValueError(message) from None
        return value


@dataclass
class Tenant:
    """A loaded tenant: its validated config, its Sales Book, its connector settings."""

    key: str
    file: Path
    config: TenantConfig
    book: SalesBook
    connector_class: type[Connector]
    settings: ConnectionSettings
    interval_minutes: int
    #: `syncd run` rewrites the report file at most this often when only data changed.
    report_minutes: int = 0
    #: Where OAuth tokens get their encryption key (called only when tokens are used).
    token_cipher: Callable[[], TokenCipher] | None = None
    #: The plugins' custom rules this tenant runs after the built-in ones.
    custom_rules: tuple[CustomRule, ...] = ()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.timezone)

    def make_connector(self, db: Database | None = None) -> Connector:
        """A connector for one pass; with ``db`` it gets the tenant's durable state."""
        connector = self.connector_class(self.settings, tenant=self.key)
        if db is not None and self.token_cipher is not None:
            connector.state = ConnectorState(tokens=TokenStore(
                db, self.key, self.config.plugin, self.token_cipher))
        share_rate_budgets(connector, db)  # one CRM budget for every process on this db
        return connector


@dataclass
class Settings:
    """The daemon config file, resolved: absolute paths and the effective database URL."""

    file: Path
    daemon: DaemonConfig
    database_url: str
    tenants_dir: Path
    salesbooks_dir: Path
    reports_dir: Path
    warnings: list[ConfigProblem] = field(default_factory=list)
    _cipher: TokenCipher | None = field(default=None, repr=False)

    @property
    def secret_key_file(self) -> Path:
        return (self.file.parent / self.daemon.secret_key_file).resolve()

    def token_cipher(self) -> TokenCipher:
        """The OAuth token cipher (``SYNCD_SECRET_KEY`` or the key file), made once."""
        if self._cipher is None:
            self._cipher = load_cipher(self.secret_key_file)
        return self._cipher

    def tenant_files(self) -> dict[str, Path]:
        if not self.tenants_dir.is_dir():
            return {}
        return {p.stem: p for p in sorted(self.tenants_dir.glob("*.yaml"))}


def load_settings(path: Path | None = None) -> Settings:
    """Load the daemon config (``SYNCD_CONFIG`` or config/syncd.yaml); env overrides."""
    file = Path(path or os.environ.get("SYNCD_CONFIG") or DEFAULT_CONFIG).resolve()
    data = read_yaml(file)
    try:
        daemon = DaemonConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, str(file))) from None
    base = file.parent
    url = os.environ.get("SYNCD_DATABASE_URL") or daemon.database_url
    return Settings(
        file=file,
        daemon=daemon,
        database_url=resolve_sqlite_path(url, base),
        tenants_dir=(base / daemon.tenants_dir).resolve(),
        salesbooks_dir=(base / daemon.salesbooks_dir).resolve(),
        reports_dir=(base / daemon.reports_dir).resolve(),
    )


def resolve_sqlite_path(url: str, base: Path) -> str:
    """Make a relative SQLite path relative to the config file, not the working dir."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base / url[len(prefix):]).resolve())
    return url


def load_tenant(
    settings: Settings, key: str, registry: ConnectorRegistry,
    *, connection_overrides: dict[str, Any] | None = None, offline: bool = False,
) -> Tenant:
    """Load, validate and resolve one tenant. Raises ConfigError listing every problem.

    ``offline``: for commands that only read the store (report, explain, dashboard) a secret
    that cannot be resolved here is not an error; the tenant cannot reach its CRM then."""
    files = settings.tenant_files()
    if key not in files:
        known = ", ".join(files) or "none"
        message = f"no tenant {key!r} in {settings.tenants_dir} (known: {known})"
        raise ConfigError(ConfigProblem(str(settings.tenants_dir), "", message))
    tenant, problems = _load_tenant(settings, files[key], registry, connection_overrides,
                                    offline=offline)
    errors = [p for p in problems if p.severity == "error"]
    if errors or tenant is None:
        raise ConfigError(errors)
    return tenant


@dataclass
class TenantSet:
    """Every tenant file, loaded: the tenants that load, and the files that do not, each
    with its problems (file, key, problem; never a secret value). One broken file hurts
    only its own tenant: callers run ``loaded`` and report ``broken``."""

    loaded: dict[str, Tenant] = field(default_factory=dict)
    broken: dict[str, list[ConfigProblem]] = field(default_factory=dict)


def load_tenants(
    settings: Settings, registry: ConnectorRegistry, keys: list[str] | None = None,
    *, offline: bool = False,
) -> TenantSet:
    """Load the named tenants (default: every tenant file) without stopping at a broken
    one. A name without a tenant file still raises ConfigError (a typo on the command
    line is the caller's mistake, not a tenant's)."""
    files = settings.tenant_files()
    wanted = list(keys) if keys else list(files)
    unknown = [key for key in wanted if key not in files]
    if unknown:
        known = ", ".join(files) or "none"
        message = (f"no tenant {', '.join(map(repr, unknown))} in {settings.tenants_dir} "
                   f"(known: {known})")
        raise ConfigError(ConfigProblem(str(settings.tenants_dir), "", message))
    result = TenantSet()
    for key in wanted:
        tenant, problems = load_tenant_file(settings, files[key], registry, offline=offline)
        if tenant is None:
            result.broken[key] = problems
        else:
            result.loaded[key] = tenant
    return result


def load_tenant_file(
    settings: Settings, path: Path, registry: ConnectorRegistry, *, offline: bool = False,
) -> tuple[Tenant | None, list[ConfigProblem]]:
    """One tenant file: the tenant, or None and the errors that stop it loading."""
    tenant, problems = _load_tenant(settings, path, registry, None, offline=offline)
    errors = [p for p in problems if p.severity == "error"]
    if tenant is None and not errors:  # defensive: a None tenant always says why
        errors = [ConfigProblem(str(path), "", "the tenant could not be loaded")]
    return (None, errors) if errors or tenant is None else (tenant, [])


def check_all(settings: Settings, registry: ConnectorRegistry) -> list[ConfigProblem]:
    """Validate every tenant and Sales Book; return all problems (errors and warnings)."""
    problems: list[ConfigProblem] = list(settings.warnings)
    files = settings.tenant_files()
    if not files:
        problems.append(ConfigProblem(str(settings.tenants_dir), "", "no tenant files (*.yaml)",
                                      severity="warning"))
    for path in sorted(settings.salesbooks_dir.glob("*.yaml")):
        try:
            load_salesbook(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
    for path in files.values():
        problems.extend(_load_tenant(settings, path, registry, None)[1])
    return _dedupe(problems)


def _dedupe(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    seen: set[str] = set()
    unique = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            unique.append(problem)
    return unique


def _load_tenant(
    settings: Settings, path: Path, registry: ConnectorRegistry,
    overrides: dict[str, Any] | None, *, offline: bool = False,
) -> tuple[Tenant | None, list[ConfigProblem]]:
    file = str(path)
    try:
        config = TenantConfig.model_validate(read_yaml(path))
    except ConfigError as exc:
        return None, exc.problems
    except ValidationError as exc:
        return None, problems_from_validation(exc, file)
    problems: list[ConfigProblem] = []
    book = _load_book(settings, config, file, problems)
    connector_class = _connector_class(config, registry, file, problems)
    settings_obj = None
    if connector_class is not None:
        connection = {**config.connection, **(overrides or {})}
        settings_obj = _connection_settings(connector_class, connection, path, problems,
                                            offline=offline)
    if book is not None:
        problems.extend(mapping_problems(config, book, file))
    problems.extend(report_problems(config, registry.sinks, path))
    problems.extend(rule_problems(config, registry.rules, book, file))
    problems.extend(digest_problems(config, path))
    if book is None or connector_class is None or settings_obj is None:
        return None, problems
    custom_rules = registry.rules.for_tenant(config.rules)
    tenant = Tenant(
        key=path.stem, file=path, config=config, connector_class=connector_class,
        settings=settings_obj,
        interval_minutes=config.interval_minutes or settings.daemon.interval_minutes,
        report_minutes=(settings.daemon.report_minutes if config.report_minutes is None
                        else config.report_minutes),
        token_cipher=settings.token_cipher,
        custom_rules=custom_rules,
        book=with_rule_weights(book, custom_rules).without_evidence_fields(
            config.mapping.fields.absent()),
    )
    return tenant, problems


def _load_book(
    settings: Settings, config: TenantConfig, file: str, problems: list[ConfigProblem],
) -> SalesBook | None:
    path = settings.salesbooks_dir / f"{config.salesbook}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(settings.salesbooks_dir.glob("*.yaml")))
        problems.append(ConfigProblem(
            file, "salesbook", f"no Sales Book {config.salesbook!r} (known: {known or 'none'})"))
        return None
    try:
        return load_salesbook(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _connector_class(
    config: TenantConfig, registry: ConnectorRegistry, file: str, problems: list[ConfigProblem],
) -> type[Connector] | None:
    try:
        return registry.get(config.plugin)
    except PluginError as exc:
        problems.append(ConfigProblem(file, "plugin", str(exc)))
        return None


#: Stands in for a secret an offline command could not resolve (never sent anywhere).
UNRESOLVED_SECRET = "(secret not loaded)"  # noqa: S105 - a placeholder, not a secret


def report_problems(config: TenantConfig, sinks: SinkRegistry,
                    path: Path) -> list[ConfigProblem]:
    """Every ``reports:`` key names a registered sink; its options fit the sink's model
    (a secret is not resolved here: a placeholder stands in; publishing resolves it)."""
    file, problems = str(path), []
    for name, options in config.reports.items():
        sink = sinks.get(name)
        if sink is None:
            message = unknown_name_message("report sink", name, sinks.names())
            if sinks.legacy:  # handed to the deprecated syncd_publish_report hook
                problems.append(ConfigProblem(
                    file, f"reports.{name}", message + "; handed to plugins implementing the "
                    "deprecated syncd_publish_report hook", severity="warning"))
            else:
                problems.append(ConfigProblem(file, f"reports.{name}", message))
            continue
        try:
            sink.options_model.model_validate(_placeholder_secrets(options or {}))
        except ValidationError as exc:
            problems.extend(problems_from_validation(exc, file, prefix=f"reports.{name}"))
    return problems


def _placeholder_secrets(value: Any) -> Any:
    if secrets.is_reference(value):
        return UNRESOLVED_SECRET
    if isinstance(value, dict):
        return {k: _placeholder_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholder_secrets(v) for v in value]
    return value


def digest_problems(config: TenantConfig, path: Path) -> list[ConfigProblem]:
    """Warnings about ``digests:`` that do not stop the tenant (its sync never depends on
    its digests): inline secrets, and secrets that cannot be resolved here."""
    if config.digests is None:
        return []
    file, problems = str(path), []
    for key in inline_secrets(config.digests):
        problems.append(ConfigProblem(file, key, "secret written inline; use {$env: NAME} or "
                                      "{$file: path}", severity="warning"))
    references = {"digests.email.password": config.digests.email and config.digests.email.password,
                  "digests.telegram.bot_token": config.digests.telegram
                  and config.digests.telegram.bot_token}
    for key, value in references.items():
        if secrets.is_reference(value):
            try:
                secrets.resolve(value, base_dir=path.parent)
            except secrets.SecretError as exc:
                problems.append(ConfigProblem(file, key, f"missing secret: {exc}; digests "
                                              "over this channel will fail", severity="warning"))
    return problems


def rule_problems(config: TenantConfig, rules: RuleRegistry, book: SalesBook | None,
                  file: str) -> list[ConfigProblem]:
    """``rules:`` switches name custom rules; the book's rule weights name known rules."""
    problems = [ConfigProblem(file, f"rules.{code}", message)
                for code, message in rules.unknown(config.rules)]
    if book is None:
        return problems
    for code in book.karma.employee.rule_weights:
        if code not in RULE_CODES and rules.get(code) is None:
            problems.append(ConfigProblem(
                file, "salesbook", f"Sales Book {book.key!r}: karma.employee.rule_weights."
                f"{code}: {unknown_name_message('rule', code, [*RULE_CODES, *rules.codes()])}",
                severity="warning"))
    return problems


def with_rule_weights(book: SalesBook, custom_rules: tuple[CustomRule, ...]) -> SalesBook:
    """The book with the custom rules' karma weights under ``karma.employee.rule_weights``
    (a weight the book sets itself wins)."""
    defaults = {rule.code: rule.karma_weight for rule in custom_rules}
    current = book.karma.employee.rule_weights
    if not defaults or all(code in current for code in defaults):
        return book
    employee = book.karma.employee.model_copy(update={"rule_weights": defaults | current})
    karma = book.karma.model_copy(update={"employee": employee})
    return book.model_copy(update={"karma": karma})


def _connection_settings(
    connector_class: type[Connector], connection: dict[str, Any], path: Path,
    problems: list[ConfigProblem], *, offline: bool = False,
) -> ConnectionSettings | None:
    file = str(path)
    model = connector_class.settings_model
    resolved: dict[str, Any] = {}
    for key, value in connection.items():
        if secrets.is_reference(value):
            try:
                resolved[key] = secrets.resolve(value, base_dir=path.parent)
            except secrets.SecretError as exc:
                if offline:
                    resolved[key] = UNRESOLVED_SECRET
                else:
                    problems.append(ConfigProblem(file, f"connection.{key}",
                                                  f"missing secret: {exc}"))
            continue
        if key in model.path_keys and isinstance(value, str) and value:
            resolved[key] = str((path.parent / Path(value).expanduser()).resolve())
            continue
        if key in model.secret_keys and isinstance(value, str):
            secrets.register(value)
            problems.append(ConfigProblem(
                file, f"connection.{key}",
                "secret written inline; use {$env: NAME} or {$file: path}", severity="warning"))
        resolved[key] = value
    if any(p.severity == "error" and p.key.startswith("connection.") for p in problems):
        return None
    try:
        return model.model_validate(resolved)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, file, prefix="connection"))
        return None


#: Why ``won``/``lost`` are not stage targets: the outcome is a status, read by the connector.
def _outcome_hint(target: str) -> Text | str:
    if target not in ("won", "lost"):
        return ""
    return Text("; {outcome!r} is an outcome, not a stage: a CRM gives it as the deal's "
                "status, and an export whose stage column holds it maps it under "
                "connection.stage_status", outcome=target)


def _task_type_problems(config: TenantConfig, file: str) -> list[ConfigProblem]:
    """syncd's tasks must not be created with a type the mapping treats as work."""
    task_type = config.writeback.task_type
    if (config.writeback.create_tasks
            and config.writeback.effective_task_type(config.mapping.activity_types) is None):
        return [ConfigProblem(
            file, "writeback.task_type",
            "create_tasks is on, but writeback.task_type is unset and no activity type is "
            "mapped to 'task': syncd's tasks get the plugin's default type (amoCRM: task_1), "
            "which people may read as a call; set writeback.task_type (syncd's tasks never "
            "count as evidence either way)", severity="warning")]
    task_kind = config.mapping.activity_types.get(task_type or "", "task")
    if not task_type or task_kind == "task":
        return []
    return [ConfigProblem(
        file, "writeback.task_type",
        f"syncd's tasks would be created as {task_type!r}, which mapping.activity_types "
        f"maps to {task_kind!r}; choose a type mapped to 'task' (or not mapped at all)")]


def evidence_gap_text(action_key: str, action: Any, field: str) -> Text:
    """What mapping an evidence field to null means for one action (check)."""
    if action.evidence.activity_types:
        return Text("null: the CRM has no {field!r} field, so Sales Book action {action!r} is "
                    "proven only by a done {kinds}", field=field, action=action_key,
                    kinds=" / ".join(action.evidence.activity_types))
    return Text("null: the CRM has no {field!r} field, so Sales Book action {action!r} "
                "(proven only by that field) is not audited; the report says so",
                field=field, action=action_key)


def _evidence_field_problems(config: TenantConfig, book: SalesBook,
                             file: str) -> list[ConfigProblem]:
    """Each deal field a Sales Book action needs as evidence is mapped (or null: absent)."""
    problems = []
    absent = config.mapping.fields.absent()
    for action_key, action in book.actions.items():
        needed = action.evidence.field
        if needed and needed in absent:
            problems.append(ConfigProblem(
                file, f"mapping.fields.deal.{needed}",
                evidence_gap_text(action_key, action, needed), severity="warning"))
        elif needed and needed not in config.mapping.fields.deal:
            severity = "warning" if action.evidence.activity_types else "error"
            then = (Text("only its activities prove it") if action.evidence.activity_types
                    else Text("the action is not audited"))
            problems.append(ConfigProblem(
                file, f"mapping.fields.deal.{needed}",
                Text("Sales Book action {action!r} needs deal field {field!r} as evidence; map "
                     "it to a CRM field name, or to null if the CRM has no such field ({then}; "
                     "docs/onboarding.md)", action=action_key, field=needed, then=then),
                severity=severity))
    return problems


def mapping_problems(config: TenantConfig, book: SalesBook, file: str) -> list[ConfigProblem]:
    """Mapping targets must exist in the Sales Book; the book's evidence fields be mapped."""
    problems = []
    stage_keys = {s.key for s in book.stages} | {DEFERRED}
    mapped: set[str] = set()
    for pipeline, stages in config.mapping.stages.items():
        for crm_stage, target in stages.items():
            if target is None:
                continue  # ignored on purpose
            mapped.add(target)
            if target not in stage_keys:
                problems.append(ConfigProblem(
                    file, f"mapping.stages.{pipeline}.{crm_stage}",
                    Text("unknown stage key {target!r} (Sales Book {book} has: {keys}; or "
                         "null/ignore){hint}", target=target, book=book.key,
                         keys=", ".join(sorted(stage_keys)), hint=_outcome_hint(target))))
    for stage in book.stages:
        if stage.key not in mapped:  # also with no stage mapping at all (docs/config.md)
            problems.append(ConfigProblem(
                file, "mapping.stages", Text(
                    "Sales Book stage {stage!r} ({title}) has no CRM stage mapped onto it",
                    stage=stage.key, title=TitleText(stage)), severity="warning"))
    for crm_reason, target in config.mapping.loss_reasons.items():
        if target is not None and target not in book.passive.lost.reasons:
            problems.append(ConfigProblem(
                file, f"mapping.loss_reasons.{crm_reason}",
                Text("unknown loss reason {target!r} (catalogue: {keys}; or null/ignore)",
                     target=target, keys=", ".join(sorted(book.passive.lost.reasons)))))
    problems += _evidence_field_problems(config, book, file)
    problems += _task_type_problems(config, file)
    if config.writeback.enabled and not config.writeback.company_karma_field:
        problems.append(ConfigProblem(file, "writeback.company_karma_field", "empty field name"))
    return problems
