"""The tables: one per normalized record type, plus sync state, violations and ledgers.

Every tenant-scoped row carries ``tenant_id``. Record tables are keyed by the CRM's own id
(``external_id``, unique per tenant) and keep the untouched CRM payload in ``raw``, a
``content_hash`` of the normalized record (so re-reading an overlap window writes nothing)
and a soft ``deleted`` flag (a CRM delete must not erase the history a violation points at).
References between CRM records are kept as the CRM's ids (``*_external_id``), not as foreign
keys: streams arrive in any order and a deal may point at a company we have not pulled yet.

Models are named ``...Row`` so they never shadow the records of ``syncd.records``. Columns
referring to other CRM records are named ``*_external_id``; each also has a synonym with the
record's attribute name (``DealRow.company_id`` is ``company_external_id``), so code that
maps records (the tenant mapper) reads stored rows and fresh records alike.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, synonym

from syncd.store.types import JSONType, UTCDateTime

#: Deterministic constraint names: alembic needs them to alter or drop constraints later
#: (and SQLite batch migrations need them to recreate tables).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: Ids of the big tables: 64-bit on PostgreSQL (an upsert that conflicts still burns a
#: sequence value), plain INTEGER on SQLite (only that aliases the rowid).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    if TYPE_CHECKING:
        # Every model here is mapped to a Table (DeclarativeBase says FromClause, which
        # has no ``name`` and is not accepted by insert()/update()).
        __table__: ClassVar[Table]
    type_annotation_map = {
        datetime: UTCDateTime(),
        date: Date(),
        dict[str, Any]: JSONType,
        list[str]: JSONType,
        Any: JSONType,
    }


def _tenant_fk(sort_order: int = 0) -> Mapped[int]:
    return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False,
                         sort_order=sort_order)


class TenantRow(Base):
    """One client CRM account. ``last_error`` is stored as given: the caller redacts it."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    plugin: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    last_sync_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)


class RecordMixin:
    """Columns every CRM record table has."""

    # Negative sort orders put the identity columns first in CREATE TABLE.
    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, sort_order=-3)
    tenant_id: Mapped[int] = _tenant_fk(sort_order=-2)
    external_id: Mapped[str] = mapped_column(String(255), sort_order=-1)
    raw: Mapped[dict[str, Any]]
    #: sha1 of the normalized record (raw included); NULL once marked deleted by id, so
    #: the record coming back is always written.
    content_hash: Mapped[str | None] = mapped_column(String(40))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    synced_at: Mapped[datetime]


def _record_args(table: str, *indexes: Index) -> tuple[Any, ...]:
    return (UniqueConstraint("tenant_id", "external_id", name=f"uq_{table}_tenant_external"),
            *indexes)


class UserRow(RecordMixin, Base):
    __tablename__ = "users"
    __table_args__ = _record_args("users")

    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(320))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    manager_external_id: Mapped[str | None] = mapped_column(String(255))
    manager_id = synonym("manager_external_id")


class PipelineRow(RecordMixin, Base):
    __tablename__ = "pipelines"
    __table_args__ = _record_args("pipelines")

    name: Mapped[str] = mapped_column(Text)


class StageRow(RecordMixin, Base):
    __tablename__ = "stages"
    __table_args__ = _record_args("stages")

    pipeline_external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    order: Mapped[int] = mapped_column(Integer, default=0)

    pipeline_id: Mapped[str] = synonym("pipeline_external_id")


class FieldDefRow(RecordMixin, Base):
    """A CRM field definition. ``external_id`` is ``"<entity>:<key>"`` (keys repeat across
    entities in some CRMs); ``entity`` and ``key`` are also kept apart for queries."""

    __tablename__ = "field_defs"
    __table_args__ = _record_args("field_defs")

    entity: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(50))
    options: Mapped[dict[str, Any]]
    custom: Mapped[bool] = mapped_column(Boolean, default=True)


class ActivityTypeRow(RecordMixin, Base):
    """A CRM activity type. ``external_id`` is the type's key (``records.ActivityType.key``)."""

    __tablename__ = "activity_types"
    __table_args__ = _record_args("activity_types")

    name: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    @property
    def key(self) -> str:
        return self.external_id


class CompanyRow(RecordMixin, Base):
    __tablename__ = "companies"
    __table_args__ = _record_args(
        "companies", Index("ix_companies_tenant_synced", "tenant_id", "synced_at"))

    name: Mapped[str] = mapped_column(Text)
    owner_external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    fields: Mapped[dict[str, Any]]

    owner_id: Mapped[str | None] = synonym("owner_external_id")


class ContactRow(RecordMixin, Base):
    __tablename__ = "contacts"
    __table_args__ = _record_args(
        "contacts", Index("ix_contacts_tenant_company", "tenant_id", "company_external_id"))

    name: Mapped[str] = mapped_column(Text)
    company_external_id: Mapped[str | None] = mapped_column(String(255))
    owner_external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    fields: Mapped[dict[str, Any]]

    company_id: Mapped[str | None] = synonym("company_external_id")
    owner_id: Mapped[str | None] = synonym("owner_external_id")


class DealRow(RecordMixin, Base):
    """A deal. ``deleted`` is set for ``status == "deleted"`` as well as for deleted ids."""

    __tablename__ = "deals"
    __table_args__ = _record_args(
        "deals",
        # Keyset pagination of the audit (tenant, id order) and company look-ups.
        Index("ix_deals_tenant_id_id", "tenant_id", "id"),
        Index("ix_deals_tenant_company", "tenant_id", "company_external_id"),
        # What changed since the last audit (the incremental audit's watermark).
        Index("ix_deals_tenant_synced", "tenant_id", "synced_at"),
    )

    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    pipeline_external_id: Mapped[str | None] = mapped_column(String(255))
    stage_external_id: Mapped[str | None] = mapped_column(String(255))
    owner_external_id: Mapped[str | None] = mapped_column(String(255))
    company_external_id: Mapped[str | None] = mapped_column(String(255))
    contact_ids: Mapped[list[str]]
    value: Mapped[float] = mapped_column(Float, default=0.0)
    currency: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    stage_changed_at: Mapped[datetime | None]
    won_at: Mapped[datetime | None]
    lost_at: Mapped[datetime | None]
    lost_reason: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict[str, Any]]

    pipeline_id: Mapped[str | None] = synonym("pipeline_external_id")
    stage_id: Mapped[str | None] = synonym("stage_external_id")
    owner_id: Mapped[str | None] = synonym("owner_external_id")
    company_id: Mapped[str | None] = synonym("company_external_id")


class ActivityRow(RecordMixin, Base):
    __tablename__ = "activities"
    __table_args__ = _record_args(
        "activities",
        Index("ix_activities_tenant_deal", "tenant_id", "deal_external_id"),
        Index("ix_activities_tenant_company", "tenant_id", "company_external_id"),
        Index("ix_activities_tenant_synced", "tenant_id", "synced_at"),
    )

    type: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text, default="")
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    due_at: Mapped[datetime | None]
    due_date: Mapped[date | None]
    done_at: Mapped[datetime | None]
    deal_external_id: Mapped[str | None] = mapped_column(String(255))
    company_external_id: Mapped[str | None] = mapped_column(String(255))
    contact_external_id: Mapped[str | None] = mapped_column(String(255))
    owner_external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(Text, default="")

    deal_id: Mapped[str | None] = synonym("deal_external_id")
    company_id: Mapped[str | None] = synonym("company_external_id")
    contact_id: Mapped[str | None] = synonym("contact_external_id")
    owner_id: Mapped[str | None] = synonym("owner_external_id")


class StageChangeRow(RecordMixin, Base):
    """One stage transition of a deal (the CRM's history entry)."""

    __tablename__ = "stage_changes"
    __table_args__ = _record_args(
        "stage_changes",
        Index("ix_stage_changes_tenant_deal_at", "tenant_id", "deal_external_id", "at"),
        Index("ix_stage_changes_tenant_synced", "tenant_id", "synced_at"),
    )

    deal_external_id: Mapped[str] = mapped_column(String(255))
    from_stage_external_id: Mapped[str | None] = mapped_column(String(255))
    to_stage_external_id: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]

    deal_id: Mapped[str] = synonym("deal_external_id")
    from_stage_id: Mapped[str | None] = synonym("from_stage_external_id")
    to_stage_id: Mapped[str] = synonym("to_stage_external_id")


class SyncCursorRow(Base):
    """A stream's committed cursor: written only in the transaction of its page."""

    __tablename__ = "sync_cursors"
    __table_args__ = (
        UniqueConstraint("tenant_id", "stream", name="uq_sync_cursors_tenant_stream"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    stream: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class SyncRunRow(Base):
    """One tenant pass. ``status``: running, ok, failed, interrupted, lease_lost or abandoned."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_tenant_started", "tenant_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    as_of: Mapped[datetime | None]
    counts: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)


class ViolationRow(Base):
    """One violation's life: opened by a run, refreshed while found, resolved when not.

    At most one open row (``resolved_at IS NULL``) per ``(tenant, key)``, enforced by a
    partial unique index; a violation that comes back after being resolved is a new row,
    so history stays truthful.
    """

    __tablename__ = "violations"
    __table_args__ = (
        Index("uq_violations_open_key", "tenant_id", "key", unique=True,
              sqlite_where=text("resolved_at IS NULL"),
              postgresql_where=text("resolved_at IS NULL")),
        Index("ix_violations_tenant_deal", "tenant_id", "deal_external_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    key: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(String(100))
    deal_external_id: Mapped[str | None] = mapped_column(String(255))
    stage_key: Mapped[str | None] = mapped_column(String(100))
    action_key: Mapped[str | None] = mapped_column(String(100))
    crm_stage: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(20))
    explanation: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    opened_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    opened_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="SET NULL"))


class KarmaLineRow(Base):
    """One ledger line: why a subject earned (or lost) ``amount`` karma, from which source."""

    __tablename__ = "karma_lines"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "subject_type", "subject_id", "criterion",
                         "source_type", "source_id", "period", name="uq_karma_lines_identity"),
        Index("ix_karma_lines_tenant_kind_unit", "tenant_id", "kind", "unit"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    kind: Mapped[str] = mapped_column(String(50))
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str] = mapped_column(String(255))
    criterion: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float)
    amount: Mapped[float] = mapped_column(Float)
    source_type: Mapped[str] = mapped_column(String(50))
    source_id: Mapped[str] = mapped_column(String(255))
    period: Mapped[str] = mapped_column(String(50))
    computed_at: Mapped[datetime]
    #: The unit of recomputation that produced the line (e.g. a company's or a deal's
    #: lines), so a pass replaces only the units its changes touch; None: written whole.
    unit: Mapped[str | None] = mapped_column(String(300))


class WritebackRow(Base):
    """The write ledger: what we intend to write (pending), wrote (done) or failed to.

    ``kind`` "field": ``field`` is the CRM field name; "task": ``field`` is the task's
    marker and ``crm_id`` the created task's id.
    """

    __tablename__ = "writebacks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "entity", "external_id", "field",
                         name="uq_writebacks_identity"),
        Index("ix_writebacks_tenant_status", "tenant_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    kind: Mapped[str] = mapped_column(String(20))
    entity: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(255))
    field: Mapped[str] = mapped_column(String(255))
    desired_value: Mapped[str | None] = mapped_column(Text)
    written_value: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    crm_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]
    #: A failed item is retried from this time on (exponential backoff per item).
    next_attempt_at: Mapped[datetime | None]


class QuarantineRow(Base):
    """A record that could not be read or stored, kept with its problem for people and
    retried every pass until it goes through (``syncd.store.quarantine``).

    ``payload`` is the CRM's raw record (NUL and unpaired surrogates shown as U+FFFD);
    ``external_id`` is the CRM's id, or ``?<hash of the payload>`` when it has none.
    """

    __tablename__ = "quarantined_records"
    __table_args__ = (
        UniqueConstraint("tenant_id", "stream", "external_id",
                         name="uq_quarantined_records_identity"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    stream: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(255))
    stage: Mapped[str] = mapped_column(String(20))  # "read" or "store"
    problem: Mapped[str] = mapped_column(Text)
    payload: Mapped[Any]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class CredentialRow(Base):
    """A tenant's OAuth tokens, encrypted (``syncd.oauth``); one row per tenant.

    Keyed by the tenant *key* (not ``tenants.id``): tokens are seeded before a tenant's first
    pass. ``seed_fingerprint`` is a hash of the credential the tenant file gave (a refresh
    token or an authorization code): when the file's value changes, the admin reconnected
    and the stored pair is replaced. ``version`` grows with every stored pair.
    """

    __tablename__ = "credentials"

    tenant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100))
    access_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    refresh_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    expires_at: Mapped[datetime | None]
    seed_fingerprint: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default="ok")  # ok | disconnected
    status_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class TenantLeaseRow(Base):
    """Which replica syncs a tenant now (PostgreSQL scale-out); one row per tenant key.

    ``fence`` grows by one with every new claim; every commit of a pass checks that the
    lease row still carries the fence it was claimed with, so a replica that paused past
    ``expires_at`` cannot write stale results after another replica took the tenant over.
    """

    __tablename__ = "tenant_leases"

    tenant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    fence: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class GateChangeRow(Base):
    """One change ``syncd apply`` made to a CRM's own settings (a stage's rotting days, a
    loss reason added), with the value before and after, so it can be reverted
    (``syncd.onboarding.gates``). Keyed by the tenant *key*: gates may be applied before a
    tenant's first pass. ``reverted_at`` is set when ``syncd apply --revert`` undid it."""

    __tablename__ = "gate_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_key: Mapped[str] = mapped_column(String(100), index=True)
    plugin: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(255))  # the CRM object's id
    label: Mapped[str] = mapped_column(Text)  # what a person reads
    before: Mapped[Any] = mapped_column(JSONType, nullable=True)
    after: Mapped[Any] = mapped_column(JSONType, nullable=True)
    applied_at: Mapped[datetime]
    reverted_at: Mapped[datetime | None]


class RateBudgetRow(Base):
    """A CRM rate budget shared by every process on this database (``syncd.store.budget``).

    ``key`` is a SHA-256 of the plugin and the integration's identity (never a secret);
    ``state`` the rule's JSON state (reserved send times, or a leaky bucket's level)."""

    __tablename__ = "rate_budgets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(Text)


class DashboardTokenRow(Base):
    """A dashboard access token (``syncd tokens``): only its SHA-256 is stored.

    ``tenant_key`` NULL is an admin token (every tenant); otherwise the token shows that
    tenant only. ``revoked_at`` set: refused from then on. ``prefix`` is the token's first
    characters, kept so a person can tell tokens apart in ``syncd tokens list``."""

    __tablename__ = "dashboard_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    tenant_key: Mapped[str | None] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class TenantSnapshotRow(Base):
    """One tenant's figures on one day (``syncd.history``): open violations by rule,
    karma and the KPIs, written by the first good pass of the tenant's local day.
    ``figures`` is the JSON documented in docs/dashboard.md ("History")."""

    __tablename__ = "tenant_snapshots"
    __table_args__ = (UniqueConstraint("tenant_id", "day", name="uq_tenant_snapshots_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    day: Mapped[date]
    taken_at: Mapped[datetime]
    figures: Mapped[dict[str, Any]]


class DigestDeliveryRow(Base):
    """One digest to one address for one period (``syncd.store.digests``): claimed by one
    replica before it is sent, marked sent after. The unique key is what makes a digest go
    out once per period however many replicas and restarts there are.

    ``recipient`` is ``email:<address>`` or ``telegram:<chat>``; ``period`` ``2026-W49``
    (weekly) or ``2026-11`` (monthly). ``status``: ``claimed`` (being sent by
    ``claimed_by`` until ``claim_expires_at``), ``retry`` (failed; again from
    ``next_attempt_at``), ``sent``, ``failed`` (given up). ``attempts`` counts claims and
    fences a stale claimer: only the claim with the current count may mark the row."""

    __tablename__ = "digest_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_key", "kind", "recipient", "period",
                         name="uq_digest_deliveries_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_key: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(320))
    period: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None]
    claim_expires_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class AuditStateRow(Base):
    """Where a tenant's incremental audit stands (``syncd.store.auditstate``).

    ``fingerprint``: digest of everything besides the records that decides a verdict (the
    Sales Book, the mapping, the timezone, the language, the CRM's stage names, the custom
    rules, the audit code): when it differs, the next pass audits every deal.
    ``audited_at``: the "now" of the last live audit. ``watermark``: the wall-clock time
    from which stored records count as changed for the next pass. ``karma_due_at``: the
    earliest "now" at which karma can change without new data (a karma window edge).
    """

    __tablename__ = "audit_states"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    audited_at: Mapped[datetime]
    watermark: Mapped[datetime]
    karma_due_at: Mapped[datetime | None]


class DealDueRow(Base):
    """The due-time index: per audited deal, the earliest instant at which its verdict can
    change without new data (None: never), and the CRM stage it counts under for
    ``unmapped_stage`` (None: mapped). ``deal_row_id`` keeps the audit's deal order."""

    __tablename__ = "deal_due"
    __table_args__ = (Index("ix_deal_due_tenant_due", "tenant_id", "due_at"),)

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    deal_external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    deal_row_id: Mapped[int] = mapped_column(BigInteger)
    due_at: Mapped[datetime | None]
    unmapped_stage: Mapped[str | None] = mapped_column(Text)


class HistoryBacklogRow(Base):
    """A deal owing its stage history (``syncd.store.backlog``): queued when a pass stored
    it changed, ``done_at`` set once its history was read (None: still pending)."""

    __tablename__ = "history_backlog"
    __table_args__ = (Index("ix_history_backlog_tenant_done", "tenant_id", "done_at"),)

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    deal_external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    queued_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


class HistorySpendRow(Base):
    """CRM requests stage history spent for one tenant on one local day."""

    __tablename__ = "history_spend"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    requests: Mapped[int]


#: Record tables by name, for counts and maintenance.
RECORD_MODELS: dict[str, type[RecordMixin]] = {
    "users": UserRow,
    "pipelines": PipelineRow,
    "stages": StageRow,
    "field_defs": FieldDefRow,
    "activity_types": ActivityTypeRow,
    "companies": CompanyRow,
    "contacts": ContactRow,
    "deals": DealRow,
    "activities": ActivityRow,
    "stage_changes": StageChangeRow,
}
