"""The connector contract: what a CRM plugin implements.

A plugin registers a ``Connector`` subclass through the ``syncd_register_connectors`` hook.
The core creates one instance per tenant pass with the tenant's validated connection
settings (secrets already resolved) and drives it:

1. ``pull(stream, cursor, ...)`` for every name in ``streams``, in order. Each yielded
   ``Page`` is committed to the store together with its cursor.
2. ``ensure_fields`` once before writing, so the custom fields we write exist.
3. ``write_fields`` / ``find_tasks`` / ``create_tasks`` for the write-back.

A connector that writes back holds a ``Writer`` (``connector.writer``): the write-back half
as an object of its own, which the connector's write methods hand their calls to.

A connector never sleeps ad hoc and never retries by itself: it makes its HTTP calls through
``syncd.http.ApiClient``, which applies the one retry and rate-limit policy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from syncd.errors import AuthError, BlockedError, BudgetExhaustedError, FatalAPIError
from syncd.records import Page, Record

if TYPE_CHECKING:
    from syncd.oauth import TokenStore

#: The streams, in the order the core pulls them. A connector may declare fewer.
#: ``contacts`` comes last: nothing after the pull reads them (the audit, the karma, the
#: report and the write-back read deals, activities, stage history and companies), so the
#: pass starts its audit while they are pulled (``AUDIT_FREE_STREAMS``).
STANDARD_STREAMS = (
    "users",
    "pipelines",
    "stages",
    "fields",
    "activity_types",
    "companies",
    "deals",
    "activities",
    "stage_history",
    "contacts",
)
#: Streams no stage after the pull reads: once only these are left to pull, the pass's
#: audit and karma run beside their pull (``syncd.sync``).
AUDIT_FREE_STREAMS = frozenset({"contacts"})


class ConnectionSettings(BaseModel):
    """Base of every connector's connection settings (the tenant file's ``connection:``)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    #: Which keys hold secrets (redacted everywhere, must come from $env/$file).
    secret_keys: ClassVar[tuple[str, ...]] = ()
    #: Which keys hold file paths: a relative one is resolved against the tenant file's
    #: folder (as ``$file`` references are), not against the working directory.
    path_keys: ClassVar[tuple[str, ...]] = ()


@dataclass
class PullContext:
    """What the core tells a connector about the current pass."""

    full: bool = False  # ignore cursors, pull everything
    overlap: timedelta = timedelta(minutes=10)  # re-read this much before each cursor
    #: Deals stored by this pass whose stage may have changed (for ``stage_history``).
    changed_deal_ids: set[str] = field(default_factory=set)
    #: Deals in ``changed_deal_ids`` that an earlier, unfinished pass stored and this pass
    #: may not read again: deal id -> (updated_at, stage id) as stored. A connector uses
    #: them for deals it did not read itself, so a rerun after an interruption applies the
    #: same history horizon (and first stage) as an uninterrupted pass.
    stored_deals: dict[str, tuple[datetime | None, str | None]] = field(default_factory=dict)
    #: Set for a connector with a ``history_backfill``: the deals whose stage history this
    #: pass reads, in order (instead of ``changed_deal_ids``), and the most requests it may
    #: spend on them (stop before the request that would exceed it).
    history_deals: list[str] | None = None
    history_allowance: int | None = None
    #: True once the daemon was asked to stop: finish the current page and return.
    stop_requested: Callable[[], bool] = lambda: False
    #: Called with the number of HTTP requests as they happen (progress display).
    on_request: Callable[[int], None] = lambda n: None


@dataclass(frozen=True)
class FieldSpec:
    """A custom field syncd writes to, created by name if missing."""

    entity: Literal["deal", "company"]
    name: str
    type: Literal["text", "number"] = "text"


@dataclass(frozen=True)
class FieldWrite:
    """Set one custom field of one record to an absolute value (idempotent in effect)."""

    entity: Literal["deal", "company"]
    external_id: str
    field_name: str
    value: str | float | None


@dataclass(frozen=True)
class TaskCreate:
    """Create one task for a deal owner. ``marker`` is unique and must be findable later
    (it goes into the task's note), so a crash between create and commit is recoverable."""

    deal_id: str
    owner_id: str | None
    subject: str
    note: str
    marker: str
    due: date
    #: The CRM's activity/task type key (``writeback.task_type``); None: the plugin's default.
    task_type: str | None = None

    @property
    def marked_note(self) -> str:
        """The note with ``[marker]`` at its end (once): what ``find_tasks`` looks for."""
        tag = f"[{self.marker}]"  # bracketed: v1 is not v12
        return self.note if tag in self.note else f"{self.note}\n\n{tag}"


@dataclass
class WriteResult:
    ok: bool
    error: str | None = None
    crm_id: str | None = None  # the id of a created task
    record: Record | None = None  # the record as the CRM returned it after the write


#: Statuses with which a CRM refuses the items of one request (a bad value, a record
#: gone), not the whole tenant.
ITEM_STATUSES = frozenset({400, 403, 404, 409, 410, 422})


def is_item_failure(error: BaseException) -> bool:
    """The CRM refused this request for its items: that write fails alone (or its batch
    is bisected, ``syncd.bisect``); auth, a ban or a spent budget stop the tenant."""
    if isinstance(error, AuthError | BlockedError | BudgetExhaustedError):
        return False
    return isinstance(error, FatalAPIError) and error.status in ITEM_STATUSES


class Writer:
    """The write-back half of a connector, an object the connector holds
    (``Connector.writer``), built with what it needs (the client, the field catalogue).

    Implement ``ensure_fields`` and, of each pair, the form the CRM's API favours: the
    batched ``write_fields`` or the single ``write_field``, ``find_tasks`` or
    ``find_task``, ``create_tasks`` or ``create_task``; the other one of the pair is
    derived from it here."""

    def ensure_fields(self, specs: Sequence[FieldSpec]) -> None:
        """Create the custom fields in ``specs`` that do not exist yet (by name)."""
        raise NotImplementedError

    def write_fields(self, changes: Sequence[FieldWrite]) -> list[WriteResult]:
        """Apply field writes; one result per change, in order."""
        return [self.write_field(change) for change in changes]

    def write_field(self, change: FieldWrite) -> WriteResult:
        return self.write_fields([change])[0]

    def find_tasks(self, tasks: Sequence[TaskCreate]) -> dict[str, str]:
        """``marker -> CRM id`` of the tasks in ``tasks`` that already exist."""
        return {task.marker: crm_id for task in tasks if (crm_id := self.find_task(task))}

    def find_task(self, task: TaskCreate) -> str | None:
        return self.find_tasks([task]).get(task.marker)

    def create_tasks(self, tasks: Sequence[TaskCreate]) -> list[WriteResult]:
        """Create ``tasks``; one result per task, in order."""
        return [self.create_task(task) for task in tasks]

    def create_task(self, task: TaskCreate) -> WriteResult:
        return self.create_tasks([task])[0]


@dataclass
class Inspection:
    """What an account has, for writing a tenant's mapping (``syncd inspect``)."""

    pipelines: list[dict[str, Any]] = field(default_factory=list)  # {id, name, stages: [...]}
    loss_reasons: list[str] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)  # entity -> field names
    activity_types: list[str] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    #: Activity type keys actually present in the account, with counts (most first), where
    #: a connector can count them (Bitrix24: provider-aware keys like
    #: ``todo:REST_APP:PRESENTATION``); what ``mapping.activity_types`` can name.
    activity_kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class StageGate:
    """A stage's own settings in the CRM that the Sales Book also defines."""

    id: str
    pipeline: str
    name: str
    #: Days without an update after which the CRM itself flags a deal (Pipedrive's
    #: "rotting"); ``None``: off. ``rotting_supported`` False: the CRM has no such setting.
    rotting_days: int | None = None
    rotting_supported: bool = False
    #: The CRM's meaning of the stage where it has one (Bitrix24: P/S/F).
    semantics: str | None = None
    #: Field names the CRM requires to enter (or leave) this stage, where it can say.
    required_fields: tuple[str, ...] = ()


@dataclass
class Gates:
    """What a CRM admin configured that the Sales Book also defines (``read_gates``)."""

    stages: list[StageGate] = field(default_factory=list)
    #: The loss-reason catalogue: CRM id -> name; ``None`` when the API cannot list it.
    loss_reasons: dict[str, str] | None = None
    #: Deal field name -> CRM field id, where the CRM can say which fields a stage requires
    #: (``StageGate.required_fields``); empty: it cannot.
    deal_fields: dict[str, str] = field(default_factory=dict)
    #: Kinds of ``GateChange`` this connector's ``apply_gate`` makes.
    writable: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateChange:
    """One change to a CRM's settings. ``kind``: ``stage_rotting`` (``target`` a stage id,
    ``before``/``after`` the rotting days or ``None`` for off), ``loss_reason_add``
    (``after`` the name), ``loss_reason_delete`` (``target`` the reason's id) or
    ``field_required`` (``target`` a deal field's id, ``before``/``after`` the sorted stage
    ids where it is required)."""

    kind: str
    target: str
    label: str
    before: Any = None
    after: Any = None


@dataclass
class ConnectorState:
    """Durable per-tenant services the core lends a connector for a pass.

    ``tokens`` keeps OAuth tokens in the database, safe under refresh-token rotation across
    processes (``syncd.oauth``); ``None`` when the connector runs without a database (unit
    tests, `syncd inspect` without a store)."""

    tokens: TokenStore | None = None


@dataclass(frozen=True)
class WebhookHint:
    """What a CRM webhook call says changed. Only a hint: the data is re-read from the API.

    ``echo`` is True when the change is our own write-back (nothing to sync)."""

    entity: str | None = None
    ids: tuple[str, ...] = ()
    echo: bool = False


@dataclass(frozen=True)
class HistoryBackfill:
    """A connector whose stage history costs a request per deal (``syncd.store.backlog``):
    at most ``requests_per_day`` history requests per local day, for deals updated within
    ``horizon_days``."""

    requests_per_day: int
    horizon_days: int


class Connector(ABC):
    """One CRM. Subclasses set ``name`` and ``settings_model`` and implement the methods."""

    name: ClassVar[str]
    settings_model: ClassVar[type[ConnectionSettings]] = ConnectionSettings
    streams: ClassVar[tuple[str, ...]] = STANDARD_STREAMS
    #: How many tasks the core hands to ``create_tasks`` / ``find_tasks`` at once.
    task_batch_size: int = 50
    #: How many field writes the core hands to ``write_fields`` at once (a connector whose
    #: batch request also carries a read-back may want fewer than its batch limit).
    field_batch_size: int = 50

    #: False when ``inspect`` knows only the names its records use (an export lists no
    #: empty stage): a mapped name it lacks is then a warning in ``syncd check``, not an error.
    complete_vocabulary: ClassVar[bool] = True

    #: Set by the core right after construction (``Tenant.make_connector``); read it lazily.
    state: ConnectorState
    #: The write-back half (``Writer``); None: this connector writes nothing back, or
    #: overrides the write methods below itself.
    writer: Writer | None = None

    def __init__(self, settings: ConnectionSettings, *, tenant: str) -> None:
        self.settings = settings
        self.tenant = tenant
        self.state = ConnectorState()

    @abstractmethod
    def pull(self, stream: str, cursor: str | None, context: PullContext) -> Iterator[Page]:
        """Yield pages of normalized records of ``stream`` changed since ``cursor``."""

    def reread(self, stream: str, payloads: Sequence[Mapping[str, Any]]) -> Page | None:
        """Normalize raw payloads of ``stream`` again: records quarantined by an earlier pass
        (``syncd.badrecords``), as the CRM sent them. Return their page (a record still
        unreadable is rejected again), or ``None`` when this connector cannot; its
        quarantined records are then retried when the CRM lists them again."""
        return None

    @abstractmethod
    def inspect(self) -> Inspection:
        """Describe the account: pipelines and stages, loss reasons, fields, users."""

    # --- write-back: handed to ``self.writer`` -----------------------------------------
    def ensure_fields(self, specs: Sequence[FieldSpec]) -> None:
        """Create the custom fields in ``specs`` that do not exist yet (by name)."""
        self._writer("write-back").ensure_fields(specs)

    def write_fields(self, changes: Sequence[FieldWrite]) -> list[WriteResult]:
        """Apply field writes; one result per change, in order. Batch where the API can."""
        if self.writer is None:
            return [self.write_field(change) for change in changes]
        return self.writer.write_fields(changes)

    def write_field(self, change: FieldWrite) -> WriteResult:
        return self._writer("write-back").write_field(change)

    def find_task(self, task: TaskCreate) -> str | None:
        """Return the CRM id of a task already created with ``task.marker``, if any."""
        return self._writer("tasks").find_task(task)

    def create_task(self, task: TaskCreate) -> WriteResult:
        return self._writer("tasks").create_task(task)

    def find_tasks(self, tasks: Sequence[TaskCreate]) -> dict[str, str]:
        """``marker -> CRM id`` of the tasks in ``tasks`` that already exist (in bulk where
        the writer can; without a writer, ``find_task`` one by one)."""
        if self.writer is None:
            return {task.marker: crm_id for task in tasks if (crm_id := self.find_task(task))}
        return self.writer.find_tasks(tasks)

    def create_tasks(self, tasks: Sequence[TaskCreate]) -> list[WriteResult]:
        """Create ``tasks``; one result per task, in order (the CRM's batch call where the
        writer has one; without a writer, ``create_task`` one by one)."""
        if self.writer is None:
            return [self.create_task(task) for task in tasks]
        return self.writer.create_tasks(tasks)

    def _writer(self, what: str) -> Writer:
        if self.writer is None:
            raise NotImplementedError(f"{self.name} does not support {what}")
        return self.writer

    def history_backfill(self) -> HistoryBackfill | None:
        """How this connector's per-deal stage history is budgeted; None: its history comes
        with the pull (no backfill). A connector returning one reads, in ``stage_history``,
        the ``PullContext.history_deals`` within ``history_allowance`` requests and names
        the deals each page completes in ``Page.covered``."""
        return None

    def webhook_hint(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        """Read a webhook call's payload (already authenticated by the core). The default
        treats every call as "something changed"; override to spot our own echoes. Raise
        ``BadPayloadError`` for a payload that is not this CRM's."""
        return WebhookHint()

    def read_gates(self) -> Gates:
        """Optional: the CRM's own gates (stage rotting, loss-reason catalogue, required
        fields) for ``syncd drift``/``plan``/``apply``. The default: none readable."""
        raise NotImplementedError(f"{self.name} cannot read its CRM settings")

    def apply_gate(self, change: GateChange) -> GateChange:
        """Optional: make one change of a kind in ``read_gates().writable``; return it as
        made (``target`` filled in for a created object, e.g. a new loss reason's id)."""
        raise NotImplementedError(f"{self.name} cannot change its CRM settings")

    @classmethod
    def deal_url(cls, settings: ConnectionSettings, deal_id: str) -> str | None:
        """Optional: the address of deal ``deal_id``'s card in the CRM's web app, for the
        dashboard's links (a sales head clicks through to fix the deal). Built from the
        connection settings alone: no request, no secret. The default: no link."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release sessions and other resources."""
