"""The read-only dashboard: one page per tenant, built from the stored report data.

Routes (all GET):

- ``/dashboard`` the tenants, their last sync and its health, links to their pages
- ``/dashboard/<tenant>`` the tenant's page (``syncd.report_html``: same as
  ``syncd report TENANT --format html``), refreshed by the browser every 5 minutes
- ``/dashboard/<tenant>.json`` the report JSON the page is drawn from (streamed)
- ``/dashboard/<tenant>/deals`` every open violation deal by deal (``syncd.deal_list``),
  filtered and sorted by the query string; every count on the tenant's page links here
- ``/dashboard/static/<name>`` the vendored chart library and the page's chart script

Pages speak the tenant's language (``language:``) unless ``?lang=ru|en`` says otherwise
(``syncd.web.templating``).

Access (``syncd.web.access``): the consultancy's admin token (``http.auth_token``, or a
``syncd tokens create --admin`` token) sees every tenant; a tenant token (``syncd tokens
create TENANT``) sees that tenant only (any other tenant is a 404, as if it did not exist).
A token comes as a bearer token, the HTTP Basic password (a browser asks for it) or in the
link form ``/t/<token>/dashboard/...``. Bound to a loopback address with no admin token and
no live token in the store, the pages are open to local users; bound anywhere else,
``register`` refuses to mount the routes without ``http.auth_token``. The pages only read
the store; nothing here writes.

Context used: ``db``, ``settings``, ``plugins``; extras ``tenants`` (key -> Tenant, else
loaded from the settings), ``auth_token``, ``http_host`` (else ``settings.daemon.http``).
"""

from __future__ import annotations

import ipaddress
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from syncd import deal_list, store
from syncd.config import Tenant, load_tenant
from syncd.errors import ConfigError, ConfigProblem
from syncd.history import local_day
from syncd.i18n import N_, translator
from syncd.report_html import render_html
from syncd.report_live import live_report, write_json
from syncd.secrets import redact
from syncd.web import templating
from syncd.web.access import Access, Gate
from syncd.web.app import WebApp, WebContext

REFRESH_SECONDS = 300
#: A tenant's report is reused for this long whatever happens (several pages of one visit)...
CACHE_SECONDS = 30.0
#: ... and then for up to this long while the tenant's newest pass is the one it was built
#: after and its local day has not turned (passes are what change a report; other changes,
#: such as a CLI command's, show within this time). A 100,000-deal report costs ~45 s of CPU.
CACHE_MAX_SECONDS = 300.0
#: The cache's clock (tests move it).
monotonic = time.monotonic
REALM = 'Basic realm="syncd dashboard", charset="UTF-8"'
#: Served pages may load scripts and styles from this server only (no CDN, works offline).
CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self' "
       "'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'")
STATIC_FILES = {
    "chart.umd.min.js": (templating.TEMPLATES / "vendor" / "chart.umd.min.js", "text/javascript"),
}
HEALTH_TITLES = {"ok": N_("ok"), "failed": N_("failed"), "interrupted": N_("interrupted"),
                 "stale": N_("stale"), "none": N_("never synced")}
FILTER_FIELDS = (("owner", N_("Manager")), ("team", N_("Team")), ("pipeline", N_("Pipeline")),
                 ("rule", N_("Rule")), ("stage", N_("Stage")))
COLUMNS = (("deal", N_("Deal")), ("owner", N_("Owner")), ("team", N_("Team")),
           ("pipeline", N_("Pipeline")), ("rule", N_("Rule")), ("stage", N_("Stage")),
           ("since", N_("Since")), ("why", N_("Why")))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (IPv4 127/8, IPv6 ::1)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None, where: str = "http") -> None:
    """Refuse a non-loopback binding without a token (raises ConfigError)."""
    if not is_loopback(host) and not token:
        raise ConfigError(ConfigProblem(
            where, "http.auth_token",
            f"required when http.host ({host}) is not a loopback address: the dashboard "
            "shows client and people data"))


def health(run: dict[str, Any] | None, interval_minutes: int, now: datetime) -> str:
    """ok, failed, interrupted, stale (no ok pass within 3 intervals) or none."""
    if run is None:
        return "none"
    if run["status"] != "ok":
        return str(run["status"])
    finished = run.get("finished_at")
    if finished is None or now - finished > timedelta(minutes=3 * interval_minutes):
        return "stale"
    return "ok"


class Dashboard:
    def __init__(self, context: WebContext) -> None:
        self.context = context
        extras = context.extras
        self.token: str | None = extras.get("auth_token")
        self.gate = Gate(context.db, self.token)
        self._tenants: dict[str, Tenant] = dict(extras.get("tenants") or {})
        self._cache: dict[tuple[str, str | None], tuple[float, Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # -- access ------------------------------------------------------------------------------
    def access(self, request: Request) -> Access | None:
        """Who asks (None: refused, answer 401)."""
        return self.gate.check(request)

    def _denied(self) -> Response:
        return Response("authentication required\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": REALM})

    def tenant_for(self, access: Access, key: str) -> Tenant:
        """The tenant ``key`` if ``access`` may see it (else 404: no hint it exists)."""
        if not access.sees(key):
            raise NotFound(f"no tenant {key!r}")
        return self.tenant(key)

    # -- data ----------------------------------------------------------------------------------
    def tenant(self, key: str) -> Tenant:
        if key not in self._tenants:
            settings, plugins = self.context.settings, self.context.plugins
            if settings is None or plugins is None or key not in settings.tenant_files():
                raise NotFound(f"no tenant {key!r}")
            self._tenants[key] = load_tenant(settings, key, plugins.connectors, offline=True)
        return self._tenants[key]

    def tenant_keys(self) -> list[str]:
        keys = set(self._tenants)
        if self.context.settings is not None:
            keys |= set(self.context.settings.tenant_files())
        return sorted(keys)

    def report(self, key: str, language: str | None = None) -> dict[str, Any]:
        """The tenant's live report (in ``language``; None: the tenant's): its violations and
        client karma are read from the store when a page goes through them
        (``syncd.report_live``), so a tenant's whole report is never held here. Cached:
        ``CACHE_SECONDS``, then up to ``CACHE_MAX_SECONDS`` while no pass ran since."""
        tenant = self.tenant(key)
        with self._lock:
            cached = self._cache.get((key, language))
        stamp = None
        if cached:
            age = monotonic() - cached[0]
            if age < CACHE_SECONDS:
                return cached[2]
            stamp = self._stamp(tenant)
            if age < CACHE_MAX_SECONDS and stamp == cached[1]:
                return cached[2]
        started = monotonic()
        stamp = stamp or self._stamp(tenant)  # taken before: a pass ending meanwhile counts
        data = live_report(self.context.database, tenant, language=language)
        with self._lock:
            self._cache[(key, language)] = (started, stamp, data)
        return data

    def _stamp(self, tenant: Tenant) -> tuple[Any, ...]:
        """What a cached report was built after: the tenant's newest run and its local day."""
        with self.context.database.session() as session:
            tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
            runs = store.last_runs(session, tenant_id, limit=1)
            run = (runs[0].id, runs[0].status, runs[0].finished_at) if runs else None
        return run, local_day(datetime.now(UTC), tenant.config.timezone)

    # -- pages ---------------------------------------------------------------------------------
    def html(self, body: str) -> Response:
        return Response(body, mimetype="text/html", headers={
            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "private, no-store"})

    def index(self, request: Request) -> Response:
        access = self.access(request)
        if access is None:
            return self._denied()
        lang, _ = templating.request_language(request, None)
        t = translator(lang, templating.DOMAIN)
        now = datetime.now(UTC)
        rows = []
        with self.context.database.session() as session:
            known = {t.key: t for t in store.list_tenants(session)}
            held = held_back(session)
            for key in filter(access.sees, self.tenant_keys()):
                row = known.get(key)
                runs = store.last_runs(session, row.id, limit=1) if row else []
                run: dict[str, Any] | None = (
                    {"status": runs[0].status, "finished_at": runs[0].finished_at,
                     "error": runs[0].error} if runs else None)
                interval = getattr(self._tenants.get(key), "interval_minutes", 15)
                rows.append({"key": key, "state": health(run, interval, now),
                             "when": _when(run, t), "held": held.get(row.id, "") if row else "",
                             "error": redact((run or {}).get("error") or "")})
        return self.html(templating.render(
            "index.html", request, lang, rows=rows, refresh=REFRESH_SECONDS,
            health_titles={k: t.gettext(v) for k, v in HEALTH_TITLES.items()}))

    def language(self, request: Request, key: str) -> tuple[str, bool]:
        return templating.request_language(request, self.tenant(key).config.language)

    def deals(self, request: Request, tenant: str) -> Response:
        """Every open violation of ``tenant``, filtered and sorted by the query string."""
        access = self.access(request)
        if access is None:
            return self._denied()
        loaded = self.tenant_for(access, tenant)
        lang, override = self.language(request, tenant)
        t = translator(lang, templating.DOMAIN)
        report = self.report(tenant, lang)
        with self.context.database.session() as session:
            tenant_id = store.ensure_tenant(session, loaded.key, loaded.config.plugin)
            where = deal_list.directory(session, loaded, tenant_id)
        every = deal_list.iter_rows(report.get("violations") or [], where, loaded.book, lang,
                                    report.get("stage_titles"))
        filters = deal_list.Filters.from_args(request.args)
        listed = deal_list.listing(every, filters, where)
        keep_lang = {"lang": lang} if override else {}
        suffix = f"&lang={lang}" if override else ""

        def sort_query(key: str) -> str:
            flip = "desc" if filters.sort == key and filters.dir == "asc" else "asc"
            return filters.query(sort=key, dir=flip, page="") + suffix

        def page_query(number: int) -> str:
            return filters.query(page=str(number) if number > 1 else "") + suffix

        return self.html(templating.render(
            "deals.html", request, lang, tenant=tenant, rows=listed.rows, shown=listed.shown,
            total=listed.total, page=listed.page, pages=listed.pages, page_query=page_query,
            deal_count=listed.deals, filters=filters,
            fvals={f: getattr(filters, f) for f, _ in FILTER_FIELDS},
            choices=listed.choices, sorts=deal_list.SORTS,
            filter_fields=[(k, t.gettext(v)) for k, v in FILTER_FIELDS],
            columns=[(k, t.gettext(v)) for k, v in COLUMNS], sort_query=sort_query,
            lang_override=override, lang_only=f"lang={lang}" if keep_lang else "",
            lang_suffix=f"?lang={lang}" if override else "",
            notes=report.get("notes") or []))

    def static(self, request: Request, name: str) -> Response:
        """The vendored chart library and the chart script (no CDN: works offline)."""
        if name not in STATIC_FILES:
            raise NotFound(name)
        path, mimetype = STATIC_FILES[name]
        return Response(path.read_bytes(), mimetype=mimetype,
                        headers={"Cache-Control": "public, max-age=86400",
                                 "X-Content-Type-Options": "nosniff"})

    def page(self, request: Request, tenant: str) -> Response:
        access = self.access(request)
        if access is None:
            return self._denied()
        self.tenant_for(access, tenant)
        lang, override = self.language(request, tenant)
        root = f"{request.script_root}/dashboard"
        deals = f"{root}/{tenant}/deals" + (f"?lang={lang}" if override else "")
        return self.html(render_html(self.report(tenant, lang), refresh_seconds=REFRESH_SECONDS,
                                     language=lang, deals_url=deals,
                                     chart_src=f"{root}/static/chart.umd.min.js"))

    def data(self, request: Request, tenant: str) -> Response:
        access = self.access(request)
        if access is None:
            return self._denied()
        self.tenant_for(access, tenant)
        # Written row by row to a file that stays in memory up to 4 MB, then sent from it.
        spool = tempfile.SpooledTemporaryFile(max_size=4 << 20, mode="w+", encoding="utf-8")  # noqa: SIM115 (closed with the response)
        try:
            write_json(self.report(tenant), spool)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        response = Response(iter(lambda: spool.read(1 << 16), ""), mimetype="application/json")
        response.call_on_close(spool.close)
        return response


def held_back(session: Session) -> dict[int, str]:
    """``tenant id -> "N quarantined, M writes rejected"`` for tenants with any."""
    quarantined = store.quarantine_counts(session)
    rejected = store.failed_counts_by_tenant(session)
    out = {}
    for tenant_id in set(quarantined) | set(rejected):
        parts = []
        if quarantined.get(tenant_id):
            parts.append(f"{quarantined[tenant_id]} quarantined")
        if rejected.get(tenant_id):
            parts.append(f"{rejected[tenant_id]} writes rejected")
        out[tenant_id] = ", ".join(parts)
    return out


def _when(run: dict[str, Any] | None, t: Any) -> str:
    if not run or run.get("finished_at") is None:
        return t.gettext("never") if not run else t.gettext("running")
    return str(t.datetime(run["finished_at"], "short"))


def register(app: WebApp, context: WebContext) -> None:
    """Mount the dashboard routes; refuses a non-loopback host without ``auth_token``."""
    settings = context.settings
    host = context.extras.get("http_host") or (
        settings.daemon.http.host if settings is not None else "127.0.0.1")
    check_binding(host, context.extras.get("auth_token"),
                  str(settings.file) if settings is not None else "http")
    dashboard = Dashboard(context)
    app.route("/dashboard", endpoint="dashboard.index")(dashboard.index)
    app.route("/dashboard/static/<name>", endpoint="dashboard.static")(dashboard.static)
    app.route("/dashboard/<tenant>/deals", endpoint="dashboard.deals")(dashboard.deals)
    app.route("/dashboard/<tenant>.json", endpoint="dashboard.data")(dashboard.data)
    app.route("/dashboard/<tenant>", endpoint="dashboard.page")(dashboard.page)


__all__ = ["Dashboard", "check_binding", "health", "is_loopback", "register"]
