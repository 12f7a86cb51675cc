"""The ``connection:`` blocks of the two tabular connectors and the ``reports: gsheets:`` block.

Both connectors read the same tabs through the same mapping (``tabs``): which tab holds
which entity and which header holds which standard column. Unmapped headers are kept as
custom fields under their header text, so ``mapping.fields.deal.lead_source: Source``
works as it does for any CRM.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeGuard, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from syncd.connector import ConnectionSettings

Entity = Literal["deals", "companies", "contacts", "activities", "stage_history", "users"]


def is_entity(name: str) -> TypeGuard[Entity]:
    return name in get_args(Entity)


#: The standard columns of each tab. ``id`` is required (stage_history: deal, to_stage, at).
COLUMNS: dict[str, tuple[str, ...]] = {
    "deals": ("id", "title", "status", "pipeline", "stage", "owner", "company", "contact",
              "value", "currency", "created_at", "updated_at", "stage_changed_at", "won_at",
              "lost_at", "lost_reason"),
    "companies": ("id", "name", "owner", "created_at", "updated_at", "deleted"),
    "contacts": ("id", "name", "company", "owner", "created_at", "updated_at", "deleted"),
    "activities": ("id", "type", "subject", "done", "due", "done_at", "deal", "company",
                   "contact", "owner", "created_at", "updated_at", "deleted", "note"),
    "stage_history": ("id", "deal", "pipeline", "from_stage", "to_stage", "at"),
    "users": ("id", "name", "email", "active", "manager"),
}
#: Default tab titles (a tab's title in the sheet, a CSV file's name without ``.csv``).
DEFAULT_TABS: dict[str, str] = {
    "deals": "Deals", "companies": "Companies", "contacts": "Contacts",
    "activities": "Activities", "stage_history": "Stage history", "users": "Users",
}
GOOGLE_SHEETS_URL = "https://sheets.googleapis.com"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TabMapping(_Strict):
    """Where one entity lives: the tab's title and header text per standard column.

    A column not listed is looked up by its own name (``created_at`` also matches the
    header "Created at"); headers matching no standard column become custom fields."""

    tab: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    #: Headers of custom-field columns holding dates (stored as ISO dates, not serials).
    date_fields: list[str] = Field(default_factory=list)
    #: Headers of custom-field columns holding numbers (``106 000,00 ₽`` is stored as
    #: 106000.0; ``syncd.values.parse_number`` says what is read). Unlisted columns keep
    #: their text, which the mapping reads with the same reader.
    number_fields: list[str] = Field(default_factory=list)


class TabularSettings(ConnectionSettings):
    """What both tabular connectors share: the tab mapping and how to read values."""

    base_url: str = ""
    tabs: dict[Entity, TabMapping] = Field(default_factory=dict)
    #: The timezone of date cells without one (sheet serials and export text carry none).
    timezone: str = "UTC"
    #: The pipeline name deals get when the deals tab has no pipeline column.
    default_pipeline: str = "Pipeline"
    #: Status cell text -> open/won/lost/deleted, e.g. ``{"Выиграна": won}`` (case-insensitive).
    status_values: dict[str, Literal["open", "won", "lost", "deleted"]] = Field(
        default_factory=dict)
    #: Stage cell text that *is* the outcome (amoCRM/Bitrix24 exports have no status
    #: column), e.g. ``{"Успешно реализовано": won, "Сделка провалена": lost}``
    #: (case-insensitive); used when the row's status cell is absent or empty.
    stage_status: dict[str, Literal["won", "lost"]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            message = f"unknown timezone {value!r} (use an IANA name like Europe/Moscow)"
            raise ValueError(message) from None
        return value

    @field_validator("tabs")
    @classmethod
    def _known_columns(cls, tabs: dict[str, TabMapping]) -> dict[str, TabMapping]:
        for entity, spec in tabs.items():
            unknown = sorted(set(spec.columns) - set(COLUMNS[entity]))
            if unknown:
                message = (f"tabs.{entity}.columns: unknown column(s) {', '.join(unknown)} "
                           f"(known: {', '.join(COLUMNS[entity])})")
                raise ValueError(message)
        return tabs

    def tab_mapping(self, entity: str) -> TabMapping | None:
        """The configured mapping of ``entity``'s tab, if any."""
        return self.tabs.get(entity) if is_entity(entity) else None

    def tab_title(self, entity: str) -> str:
        spec = self.tab_mapping(entity)
        return spec.tab if spec is not None and spec.tab else DEFAULT_TABS[entity]


class SpreadsheetSettings(TabularSettings):
    """A client's CRM export on disk: one ``.xlsx`` workbook (one tab per entity) or a
    directory of ``<tab title>.csv`` files. No credentials at all."""

    path_keys: ClassVar[tuple[str, ...]] = ("path",)

    #: The export; a relative path is relative to the tenant file's folder.
    path: str = Field(min_length=1)
    #: CSV only: the delimiter (``auto`` sniffs ``,`` ``;`` or tab) and the encoding.
    delimiter: Literal["auto", ",", ";", "\t"] = "auto"
    encoding: str = "utf-8-sig"


class ServiceAccountMixin(BaseModel):
    """A Google service-account key (the JSON key file's content, via ``{$file: key.json}``)."""

    credentials: str = Field(min_length=2)
    #: Sheets allows 60 requests per minute per user; a service account is one user, shared
    #: by every tenant of this daemon that uses the same key.
    requests_per_minute: int = Field(default=60, ge=1, le=600)
    timeout_seconds: float = Field(default=60, gt=0)


class GSheetsSettings(ServiceAccountMixin, TabularSettings):
    """A Google spreadsheet used as a client's CRM."""

    secret_keys: ClassVar[tuple[str, ...]] = ("credentials",)

    base_url: str = GOOGLE_SHEETS_URL
    spreadsheet_id: str = Field(min_length=10, pattern=r"^[A-Za-z0-9_-]+$")


class ReportSinkOptions(ServiceAccountMixin):
    """The tenant file's ``reports: gsheets:`` block."""

    model_config = ConfigDict(extra="forbid")

    sink: Literal["gsheets"] = "gsheets"
    spreadsheet_id: str = Field(min_length=10, pattern=r"^[A-Za-z0-9_-]+$")
    base_url: str = GOOGLE_SHEETS_URL
    #: Prefix of every report tab's title (tabs without it are never touched).
    tab_prefix: str = "syncd "
    #: Report language for labels: follows the tenant's ``language`` when not set.
    language: Literal["en", "ru"] | None = None

    @field_validator("tab_prefix")
    @classmethod
    def _printable_prefix(cls, value: str) -> str:
        if any(ch in value for ch in "[]*?:/\\"):
            message = "tab_prefix may not contain []*?:/\\ (not allowed in sheet titles)"
            raise ValueError(message)
        return value
