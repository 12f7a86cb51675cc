"""TinyCRM: the example plugin that docs/plugins.md walks through.

TinyCRM is a made-up CRM with the shape most REST CRMs have: a bearer token, JSON lists
``{"data": [...], "next_cursor": "..."}`` paged by an opaque cursor, and a deal list that
filters ``updated_since`` (inclusive, to the second) and sorts by ``updated_at``. The
plugin declares four streams; paging, request accounting, stopping, read-ahead and the
compound cursor (no record read twice) come from ``syncd.streams``; retries and the rate
limit from ``syncd.http``; value parsing from ``syncd.values``. tests/test_example_plugin.py
runs it against a tiny fake TinyCRM on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

from syncd import ConnectionSettings, Inspection
from syncd.http import ApiClient
from syncd.ratelimit import RateLimiter
from syncd.records import Deal, Page, Pipeline, Record, Stage, User
from syncd.streams import (
    NextToken,
    Read,
    Stream,
    StreamConnector,
    incremental,
    paginate,
    version_key,
)
from syncd.values import parse_datetime, parse_id, parse_number

__all__ = ["TinyConnector", "TinySettings"]


class TinySettings(ConnectionSettings):
    """The tenant file's ``connection:`` block."""

    api_token: str
    #: TinyCRM documents 5 requests per second per token.
    rate_per_second: int = 5
    secret_keys: ClassVar[tuple[str, ...]] = ("api_token",)


# --- normalizers: one small function per record type ----------------------------------------
def required(item: Mapping[str, Any], key: str = "id") -> str:
    value = parse_id(item.get(key))
    if value is None:
        message = f"missing {key}"
        raise ValueError(message)
    return value


def user(item: Mapping[str, Any]) -> User:
    return User(external_id=required(item), name=str(item.get("name") or ""),
                email=item.get("email") or None, raw=dict(item))


def pipeline(item: Mapping[str, Any]) -> Pipeline:
    return Pipeline(external_id=required(item), name=str(item.get("name") or ""),
                    raw=dict(item))


def stage(item: Mapping[str, Any]) -> Stage:
    return Stage(external_id=required(item), pipeline_id=required(item, "pipeline_id"),
                 name=str(item.get("name") or ""), order=int(item.get("position") or 0),
                 raw=dict(item))


def deal(item: Mapping[str, Any]) -> Deal:
    return Deal(external_id=required(item), title=str(item.get("title") or ""),
                status=item.get("status") or "open", pipeline_id=parse_id(item.get("pipeline_id")),
                stage_id=parse_id(item.get("stage_id")), owner_id=parse_id(item.get("owner_id")),
                value=parse_number(item.get("value")) or 0.0,
                created_at=parse_datetime(item.get("created_at"), UTC),
                updated_at=parse_datetime(item.get("updated_at"), UTC), raw=dict(item))


#: A deal's identity and version for the compound cursor: (id, updated_at).
deal_version = version_key("id", "updated_at", parse_id, lambda v: parse_datetime(v, UTC))


# --- the connector ---------------------------------------------------------------------------
class TinyConnector(StreamConnector):
    """One TinyCRM account, for one tenant pass."""

    name: ClassVar[str] = "tinycrm"
    settings_model: ClassVar[type[ConnectionSettings]] = TinySettings
    streams: ClassVar[tuple[str, ...]] = ("users", "pipelines", "stages", "deals")

    def __init__(self, settings: TinySettings, *, tenant: str,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(settings, tenant=tenant)
        self.api = ApiClient(settings.base_url,
                             auth_headers={"Authorization": f"Bearer {settings.api_token}"},
                             limiter=RateLimiter(settings.rate_per_second, 1.0))
        self._now = now

    def declare_streams(self) -> list[Stream]:
        return [
            Stream("users", partial(self._whole, "users", "/v1/users", user)),
            Stream("pipelines", partial(self._whole, "pipelines", "/v1/pipelines", pipeline)),
            Stream("stages", partial(self._whole, "stages", "/v1/stages", stage)),
            Stream("deals", self._deals, reread=lambda payloads: [deal(p) for p in payloads]),
        ]

    def requests_made(self) -> int:
        return self.api.requests_here

    def _pages(self, path: str, params: Mapping[str, Any] | None = None,
               ) -> Iterator[list[Any]]:
        """Every page of a TinyCRM list (``next_cursor`` until it is null)."""
        return paginate(lambda query: self.api.get(path, params=query),
                        lambda body: list(body["data"]),
                        NextToken(lambda body: body.get("next_cursor")),
                        {"limit": 100, **(params or {})}, where=f"tinycrm {path}")

    def _whole(self, stream: str, path: str, normalize: Callable[[Mapping[str, Any]], Record],
               read: Read) -> Iterator[Page]:
        """A small list read whole every pass (no cursor)."""
        for items in self._pages(path):
            yield Page(stream, [normalize(item) for item in items])

    def _deals(self, read: Read) -> Iterator[Page]:
        """Deals changed since the watermark less the overlap, oldest change first."""
        mark = read.watermark()
        params = {"sort": "updated_at"}
        since = mark.since(read.context.overlap)
        if since is not None:
            params["updated_since"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
        started = self._now()
        yield from incremental(
            "tinycrm deals", read.prefetch(self._pages("/v1/deals", params)),
            lambda items: Page("deals", [deal(item) for item in items]), mark, deal_version,
            overlap=read.context.overlap, cap=started, read_at=started)

    def inspect(self) -> Inspection:
        stages = [stage(s) for items in self._pages("/v1/stages") for s in items]
        return Inspection(pipelines=[
            {"id": p.external_id, "name": p.name,
             "stages": [{"id": s.external_id, "name": s.name, "order": s.order}
                        for s in stages if s.pipeline_id == p.external_id]}
            for items in self._pages("/v1/pipelines") for p in map(pipeline, items)])

    def close(self) -> None:
        self.api.close()
