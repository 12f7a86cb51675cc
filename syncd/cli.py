"""The `syncd` command. Exit codes: see syncd/exitcodes.py and docs/cli.md."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError

from syncd import __version__, exitcodes, store
from syncd.config import (
    Settings,
    Tenant,
    TenantSet,
    check_all,
    load_settings,
    load_tenant,
    load_tenants,
)
from syncd.daemon import Runner, TenantOutcome, config_outcome, log_broken
from syncd.display import print_people_and_kpis, print_report, print_summary, pull_progress
from syncd.errors import ConfigError, ConfigProblem, PluginError, SyncdError
from syncd.fieldcheck import offline_problems
from syncd.i18n import (
    LANGUAGES,
    Text,
    Translator,
    environment_language,
    say,
    translator,
)
from syncd.logs import setup_logging
from syncd.onboarding.todos import todo_problems
from syncd.plugins import Plugins, make_plugin_manager
from syncd.report import build_report
from syncd.report_live import live_report, write_json
from syncd.salesbook import read_yaml
from syncd.secrets import redact
from syncd.sync import PassOptions

log = logging.getLogger("syncd")
P = ParamSpec("P")
R = TypeVar("R")
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Map our errors onto the documented exit codes with a clean one-line message, said in
    the reader's language (``reader_language``)."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        given = kwargs.get("lang")  # --lang, on the commands that have it
        lang = given if isinstance(given, str) else None
        tenant = kwargs.get("tenant")
        context = args[0] if args and isinstance(args[0], Context) else None

        def said(file: str = "") -> Translator:
            return translator(reader_language(lang, file or _tenant_file(context, tenant)),
                              "cli")

        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                t = said(problem.file)
                word = t.gettext("error:")
                err.print(f"[red]{word}[/] {escape(redact(problem.say(t.lang)))}",
                          highlight=False)
            sys.exit(exitcodes.CONFIG_ERROR)
        except PluginError as exc:
            word = said().gettext("plugin error:")
            err.print(f"[red]{word}[/] {redact(str(exc))}", highlight=False)
            sys.exit(exitcodes.CONFIG_ERROR)
        except KeyboardInterrupt:
            err.print(said().gettext("interrupted"))
            sys.exit(exitcodes.INTERRUPTED)
        except SyncdError as exc:
            t = said()
            message = (exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], Text)
                       else str(exc))
            word = t.gettext("error:")
            err.print(f"[red]{word}[/] {redact(say(message, t.lang))}", highlight=False)
            sys.exit(exitcodes.TENANT_FAILED)
        except OSError as exc:  # a path given by the user (``-o``, a config file, a port)
            where = f": {exc.filename}" if exc.filename else ""
            word = said().gettext("error:")
            err.print(f"[red]{word}[/] {redact(f'{exc.strerror or exc}{where}')}",
                      highlight=False)
            sys.exit(exitcodes.CONFIG_ERROR)
        except DBAPIError as exc:  # the database cannot be reached or used
            reason = redact(" ".join(str(exc.orig or exc).split())[:300])
            t = said()
            word = t.gettext("error:")
            err.print(f"[red]{word}[/] " + t.gettext(
                "the database cannot be used ({reason}); check database_url / "
                "SYNCD_DATABASE_URL").format(reason=reason), highlight=False)
            sys.exit(exitcodes.CONFIG_ERROR)
        except Exception as exc:  # a bug: the traceback goes to the log, a line to the user
            log.critical("internal error in `syncd %s`", func.__name__.replace("_", " "),
                         exc_info=True)
            t = said()
            word = t.gettext("internal error:")
            err.print(f"[red]{word}[/] "
                      f"{redact(f'{type(exc).__name__}: {exc}')} "
                      + t.gettext("(a bug in syncd; the traceback is in the log)"),
                      highlight=False)
            sys.exit(exitcodes.INTERNAL_ERROR)

    return wrapper


def reader_language(override: str | None, file: str | Path | None = None) -> str:
    """The language a command's message is said in: ``--lang``; else, for a message about
    a tenant file, that file's ``language`` (read leniently); else the locale environment
    (``LANG``...: ``ru_RU.UTF-8`` is Russian); else English (docs/i18n.md)."""
    if override in LANGUAGES:
        return str(override)
    if file:
        path = Path(file)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                data = read_yaml(path)
            except ConfigError:
                data = {}
            language = data.get("language") if isinstance(data, dict) else None
            if language in LANGUAGES:
                return str(language)
    return environment_language()


def _tenant_file(context: Context | None, tenant: Any) -> Path | None:
    """The file of the tenant a command names (``report TENANT``), when the settings load."""
    if context is None or not isinstance(tenant, str) or context._settings is None:
        return None
    return context._settings.tenant_files().get(tenant)


class Context:
    def __init__(self, config: str | None) -> None:
        self.config_path = Path(config) if config else None
        self._settings: Settings | None = None
        self._plugins: Plugins | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            setup_logging(self._settings.daemon.log_level)
        return self._settings

    @property
    def plugins(self) -> Plugins:
        if self._plugins is None:
            self._plugins = make_plugin_manager()
        return self._plugins

    def database(self) -> store.Database:
        db = store.Database(self.settings.database_url)
        db.upgrade()
        return db

    def tenants(self, keys: tuple[str, ...] | list[str], *,
                offline: bool = False) -> list[Tenant]:
        """Load tenants; ``offline`` for commands that only read the store (no CRM call),
        which then work without the CRM secrets."""
        keys = list(keys) or list(self.settings.tenant_files())
        if not keys:
            message = f"no tenants configured in {self.settings.tenants_dir}"
            raise ConfigError(message)
        return [load_tenant(self.settings, key, self.plugins.connectors, offline=offline)
                for key in keys]

    def tenant_set(self, keys: tuple[str, ...], *, offline: bool = False) -> TenantSet:
        """Load the named tenants (default: all) without stopping at a broken file: the
        broken ones are returned with their problems (a name without a file is an error)."""
        if not keys and not self.settings.tenant_files():
            message = f"no tenants configured in {self.settings.tenants_dir}"
            raise ConfigError(message)
        return load_tenants(self.settings, self.plugins.connectors, list(keys),
                            offline=offline)


pass_context = click.make_pass_decorator(Context)


@click.group()
@click.option("--config", "-c", envvar="SYNCD_CONFIG", type=click.Path(dir_okay=False),
              help="Daemon config file [default: config/syncd.yaml; env SYNCD_CONFIG].")
@click.version_option(__version__, prog_name="syncd")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """syncd: audit one Sales Book standard across your clients' CRMs."""
    ctx.obj = Context(config)
    setup_logging("WARNING")


def parse_as_of(text: str | None, tz: ZoneInfo) -> datetime | None:
    """ISO date (= the end of that day in the tenant's timezone) or datetime."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=tz).date()
            return datetime.combine(day + timedelta(days=1), time(0), tz) - timedelta(
                microseconds=1)
        moment = datetime.fromisoformat(text)
    except ValueError:
        message = f"--as-of: {text!r} is not an ISO date (2026-10-31) or datetime"
        raise ConfigError(message) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


#: ``--lang``: the language of what a command prints, for this run (docs/i18n.md).
LANG_OPTION = click.option(
    "--lang", type=click.Choice(LANGUAGES), default=None,
    help="Language of the output [default: the tenant's `language`].")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_context
@handle_errors
def plugins(obj: Context, fmt: str) -> None:
    """List the plugins found through the `syncd` entry points and their connectors."""
    rows = obj.plugins.describe()
    if fmt == "json":
        out.print_json(json.dumps(rows))
        return
    for row in rows:
        if row.get("error"):
            out.print(f"[bold red]{row['name']}[/]: failed to load: {row['error']}",
                      highlight=False)
            continue
        if not row["hooks"]:
            continue
        version = f" {row['version']}" if row["version"] else ""
        out.print(f"[bold]{row['name']}[/]{version} ({row['distribution'] or 'local'}): "
                  f"connectors {', '.join(row['connectors']) or '-'}; "
                  + "".join(f"{kind} {', '.join(names)}; "
                            for kind, names in (("sinks", row["sinks"]), ("rules", row["rules"]))
                            if names)
                  + f"hooks {', '.join(row['hooks'])}", highlight=False)


@main.command()
@click.option("--online", is_flag=True, help="Also read each account: every mapped name must "
              "exist there; unmapped CRM stages and the mapping's outcome are shown.")
@LANG_OPTION
@pass_context
@handle_errors
def check(obj: Context, online: bool, lang: str | None) -> None:
    """Validate the daemon config, every tenant and Sales Book (exit 2 on errors)."""
    problems = check_all(obj.settings, obj.plugins.connectors)
    problems += offline_problems(obj.settings, obj.plugins.connectors)  # local exports
    problems += todo_problems(obj.settings.tenant_files())  # left by `syncd init`
    from syncd.onboarding.online import online_problems

    # --online reads every account; without it, local exports are still opened (no network)
    found, previews = online_problems(obj.settings, obj.plugins.connectors,
                                      obj.database() if online else None,
                                      local_only=not online)
    problems += found
    languages = tenant_languages(obj.settings.tenant_files(), lang)
    for preview in previews:
        out.print(preview.line(languages.get(preview.tenant, reader_language(lang))),
                  highlight=False)
    errors = [p for p in problems if p.severity == "error"]
    by_file = {str(path): languages.get(key, "en")
               for key, path in obj.settings.tenant_files().items()}
    for problem in problems:
        said = translator(by_file.get(problem.file, reader_language(lang)), "cli")
        colour, word = (("red", said.gettext("error:")) if problem.severity == "error"
                        else ("yellow", said.gettext("warning:")))
        err.print(f"[{colour}]{word}[/] {escape(redact(problem.say(said.lang)))}",
                  highlight=False)
    t = translator(lang or _common(languages.values()) or reader_language(None), "cli")
    tenants = len(obj.settings.tenant_files())
    out.print(t.ngettext("{n} tenant checked: {errors} error(s), {warnings} warning(s)",
                         "{n} tenants checked: {errors} error(s), {warnings} warning(s)",
                         tenants).format(n=tenants, errors=len(errors),
                                         warnings=len(problems) - len(errors)))
    if errors:
        sys.exit(exitcodes.CONFIG_ERROR)


def tenant_languages(files: dict[str, Path], override: str | None) -> dict[str, str]:
    """``tenant -> the language its messages are said in``: ``override`` (``--lang``), else
    the tenant file's ``language`` (read leniently: a file without a readable one is said
    in the locale environment's language, ``reader_language``)."""
    return {key: reader_language(override, path) for key, path in files.items()}


def _common(languages: Iterable[str]) -> str | None:
    """The one language every tenant shares, else None (the reader's)."""
    distinct = set(languages)
    return distinct.pop() if len(distinct) == 1 else None


def exit_code_for(outcomes: list[TenantOutcome], *, named: bool = False) -> int:
    """The exit code of `syncd sync` (docs/cli.md): 130 interrupted; 2 when a tenant named
    on the command line (or every tenant) has a broken file; 1 when a pass failed or a
    tenant file did not load; 4 when every pass ran but one is partial; else 0."""
    if any(o.interrupted for o in outcomes):
        return exitcodes.INTERRUPTED
    broken = [o for o in outcomes if o.config_error]
    if broken and (named or len(broken) == len(outcomes)):
        return exitcodes.CONFIG_ERROR
    if any(not o.ok for o in outcomes):
        return exitcodes.TENANT_FAILED
    if any(o.partial for o in outcomes):
        return exitcodes.PARTIAL
    return exitcodes.OK


@main.command()
@click.argument("tenants", nargs=-1)
@click.option("--full", is_flag=True, help="Ignore cursors and pull everything.")
@click.option("--as-of", "as_of", help="Audit as of this date/datetime (tenant timezone).")
@click.option("--no-write", is_flag=True, help="Do not write anything back to the CRM.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_context
@handle_errors
def sync(obj: Context, tenants: tuple[str, ...], full: bool, as_of: str | None,
         no_write: bool, fmt: str) -> None:
    """One pass for the named tenants (default: all): pull, audit, score, write back.

    A tenant file that does not load is reported and skipped; the others run."""
    found = obj.tenant_set(tenants)
    log_broken(found.broken)
    outcomes = []
    files = obj.settings.tenant_files()
    for key, problems in found.broken.items():
        outcome = config_outcome(key, problems)
        outcomes.append(outcome)
        if fmt == "table":
            _print_broken(key, problems, reader_language(None, files.get(key)))
    runner = Runner(obj.settings, obj.plugins, obj.database()) if found.loaded else None
    overlap = timedelta(minutes=obj.settings.daemon.overlap_minutes)
    for tenant in found.loaded.values():
        assert runner is not None
        options = PassOptions(full=full, as_of=parse_as_of(as_of, tenant.tz),
                              write=not no_write, overlap=overlap)
        with pull_progress(tenant.key, options, err):
            outcome = runner.run_one_off(tenant, options)
        outcomes.append(outcome)
        if fmt == "table":
            _print_outcome(outcome, tenant.config.language)
    if fmt == "json":
        out.print_json(json.dumps([_outcome_dict(o) for o in outcomes]))
    sys.exit(exit_code_for(outcomes, named=bool(tenants)))


def _outcome_dict(outcome: TenantOutcome) -> dict[str, Any]:
    return {"tenant": outcome.tenant, "ok": outcome.ok, "error": outcome.error,
            "config_error": outcome.config_error, "partial": outcome.partial,
            "report": outcome.report,
            "summary": outcome.summary.as_dict() if outcome.summary else None}


def _print_broken(key: str, problems: list[ConfigProblem], language: str) -> None:
    """A tenant whose file does not load: skipped, each problem in the reader's language."""
    t = translator(language, "cli")
    err.print("[red]" + escape(t.gettext("{tenant}: skipped, its tenant file does not load:")
                               .format(tenant=key)) + "[/]", highlight=False)
    for problem in problems:
        err.print(f"  {escape(redact(problem.say(t.lang)))}", highlight=False)


def _print_outcome(outcome: TenantOutcome, language: str = "en") -> None:
    t = translator(language, "cli")
    if not outcome.ok:
        err.print("[red]" + escape(t.gettext("{tenant}: failed:").format(tenant=outcome.tenant))
                  + f"[/] {escape(str(outcome.error))}", highlight=False)
        return
    assert outcome.summary is not None
    print_summary(out, outcome.summary.as_dict(), language)
    if outcome.report:
        out.print(t.gettext("report: {path}").format(path=outcome.report), highlight=False)


@main.command()
@click.argument("tenants", nargs=-1)
@click.option("--max-passes", type=int, default=None, hidden=True,
              help="Stop after this many tenant passes (tests).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              envvar="SYNCD_LOG_FORMAT", show_default=True,
              help="json: one object per line for log collectors [env SYNCD_LOG_FORMAT].")
@click.option("--replica-id", envvar="SYNCD_REPLICA_ID", default=None,
              help="This replica's name in the lease table [default: host:pid:random].")
@pass_context
@handle_errors
def run(obj: Context, tenants: tuple[str, ...], max_passes: int | None, log_format: str,
        replica_id: str | None) -> None:
    """The daemon: every tenant on its interval until SIGTERM/SIGINT; several replicas may
    share one PostgreSQL (see docs/operations.md)."""
    from syncd.daemon import serve
    from syncd.lease import ReplicaRefused
    from syncd.tenantfiles import TenantWatcher

    setup_logging(obj.settings.daemon.log_level, log_format)
    unknown = [key for key in tenants if key not in obj.settings.tenant_files()]
    if unknown or not (tenants or obj.settings.tenant_files()):
        obj.tenant_set(tenants)  # raises the config error naming what is missing (exit 2)
    watcher = TenantWatcher(obj.settings, obj.plugins.connectors, list(tenants) or None)
    found = watcher.load()
    loaded = [t for t in found.loaded.values() if t.config.enabled]
    try:
        code = serve(obj.settings, obj.plugins, store.Database(obj.settings.database_url),
                     loaded, max_passes=max_passes, holder=replica_id, watcher=watcher,
                     broken=found.broken)
    except ReplicaRefused as exc:
        err.print(f"[red]error:[/] {redact(str(exc))}", highlight=False)
        sys.exit(exitcodes.CONFIG_ERROR)
    sys.exit(code)


@main.command()
@click.argument("tenant")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table",
              help="html: the dashboard page as one self-contained file.")
@click.option("--as-of", "as_of", help="Audit stored data as of this date/datetime.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write the report here too (JSON; HTML with --format html).")
@click.option("--benchmark", is_flag=True,
              help="Add the anonymised funnel benchmark against tenants on the same Sales Book.")
@click.option("--onboarding/--no-onboarding", default=None,
              help="Open with the first-audit summary [default: when the tenant has at most "
              "one finished pass].")
@LANG_OPTION
@click.option("--compare", "compare_month", metavar="YYYY-MM",
              help="Compare with that month's last daily snapshot (JSON key `compare`).")
@pass_context
@handle_errors
def report(obj: Context, tenant: str, fmt: str, as_of: str | None, output: str | None,
           benchmark: bool, onboarding: bool | None, lang: str | None,
           compare_month: str | None) -> None:
    """Violations, karma, people, KPIs and the contact matrix of one tenant (from the store)."""
    from syncd.onboarding import summary

    loaded = obj.tenants([tenant], offline=True)[0]
    database = obj.database()
    moment = parse_as_of(as_of, loaded.tz)
    # Live: the violations and client karma are read from the store as they are written
    # (syncd.report_live); --as-of audits the stored data again, in memory.
    data = (build_report(database, loaded, as_of=moment, language=lang) if moment is not None
            else live_report(database, loaded, language=lang))
    if onboarding or (onboarding is None and summary.is_new(database, loaded)):
        data["onboarding"] = summary.onboarding_summary(database, loaded, data)
    if benchmark:
        data["benchmark"] = _benchmark(obj, database, loaded)
    if compare_month:
        from syncd import history

        data["compare"] = history.compare_section(database, loaded, data,
                                                  _month_option(compare_month))
    if fmt == "html":
        from syncd.report_html import render_html

        page = render_html(data)
        if output:
            Path(output).write_text(page, "utf-8")
        else:
            sys.stdout.write(page)
        return
    if output:
        with Path(output).open("w", encoding="utf-8") as file:
            write_json(data, file)
    if fmt == "json":
        write_json(data, sys.stdout)
        sys.stdout.write("\n")
    else:
        if data.get("onboarding"):
            out.print(f"[bold]{data['onboarding']['headline']}[/]", highlight=False)
            for line in data["onboarding"]["findings"]:
                out.print(f"- {line}", highlight=False)
        print_report(out, data)
        print_people_and_kpis(out, data)
        _print_compare(data, loaded)


def _print_compare(data: dict[str, Any], tenant: Tenant) -> None:
    if data.get("compare"):
        from syncd.history import compare_lines

        for line in compare_lines(data["compare"], data.get("language") or tenant.config.language):
            out.print(line, highlight=False)


def _month_option(text: str) -> str:
    try:
        datetime.strptime(text, "%Y-%m")
    except ValueError:
        message = f"--compare: {text!r} is not a month (YYYY-MM)"
        raise ConfigError(message) from None
    return text


def _benchmark(obj: Context, database: store.Database, tenant: Tenant) -> dict[str, Any]:
    """Funnels of every tenant on the same Sales Book (tenants that fail to load are left
    out, with a warning), compared anonymously."""
    from syncd.kpi.benchmark import benchmark
    from syncd.load import tenant_funnel

    now = datetime.now(tenant.tz)
    funnels = {tenant.key: tenant_funnel(database, tenant, now)}
    for key in obj.settings.tenant_files():
        if key == tenant.key:
            continue
        try:
            other = load_tenant(obj.settings, key, obj.plugins.connectors, offline=True)
        except (ConfigError, PluginError):
            err.print(f"[yellow]warning:[/] benchmark: tenant {key} does not load; left out")
            continue
        if other.book.key == tenant.book.key:
            funnels[key] = tenant_funnel(database, other, now)
    return benchmark(tenant.key, funnels)


@main.command()
@click.argument("tenant")
@click.option("--company", "company_id", help="Explain a company's client karma.")
@click.option("--user", "user_id", help="Explain a user's (and their team's) karma.")
@click.option("--period", help="Only this month (YYYY-MM), with --user.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@LANG_OPTION
@pass_context
@handle_errors
def explain(obj: Context, tenant: str, company_id: str | None, user_id: str | None,
            period: str | None, fmt: str, lang: str | None) -> None:
    """Why a company or a person has their karma: every ledger line and its source record."""
    from syncd.report import explain_company, explain_user

    if bool(company_id) == bool(user_id):
        raise ConfigError("explain: give exactly one of --company ID or --user ID")
    if period is not None and (len(period) != 7 or period[4] != "-"
                               or not period.replace("-", "").isdigit()):
        raise ConfigError(f"--period: {period!r} is not a month like 2026-10")
    loaded = obj.tenants([tenant])[0]
    database = obj.database()
    data = (explain_company(database, loaded, company_id) if company_id
            else explain_user(database, loaded, user_id or "", period))
    if fmt == "json":
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return
    _print_explanation(data, lang or loaded.config.language)


def _print_explanation(data: dict[str, Any], language: str = "en") -> None:
    t = translator(language, "cli")

    def line_text(line: dict[str, Any]) -> str:
        quantity, amount = t.number(line["quantity"], 2), t.number(line["amount"], 2)
        return (f"  {line['criterion']:<14}{quantity:>14} x {line['weight']:>9g}"
                f" = {amount:>12}   {line['source_type']} {line['source_id']}")

    if "company_id" in data:
        out.print(t.ngettext(
            "[bold]{name}[/] ({id}): client karma {karma} = the sum of {n} line",
            "[bold]{name}[/] ({id}): client karma {karma} = the sum of {n} lines",
            len(data["lines"])).format(name=data["company"] or data["company_id"],
                                       id=data["company_id"], karma=t.number(data["karma"], 2),
                                       n=len(data["lines"])), highlight=False)
        for line in data["lines"]:
            out.print(line_text(line), highlight=False)
        return
    out.print(f"[bold]{data['name'] or data['user_id']}[/] ({data['user_id']})", highlight=False)
    if not data["periods"]:
        out.print("  " + t.gettext("no employee karma lines"))
    for period in data["periods"]:
        out.print(" " + t.gettext("{period}: karma {karma}, bonus {bonus} (rate {rate})").format(
            period=period["period"], karma=t.number(period["karma"], 2),
            bonus=t.number(period["bonus"], 2), rate=f"{data['bonus_rate']:g}"),
            highlight=False)
        for line in period["lines"]:
            out.print(line_text(line), highlight=False)
    for month in data["manager_karma"]:
        members = ", ".join(f"{m['name']} {t.number(m['karma'], 2)}" for m in month["members"])
        out.print(" " + t.gettext("manager karma {period}: {karma} = mean of {members}").format(
            period=month["period"], karma=t.number(month["karma"], 2), members=members),
            highlight=False)


@main.command()
@click.argument("tenants", nargs=-1)
@click.option("--host", help="Bind address [default: http.host of the daemon config].")
@click.option("--port", type=int, help="Port [default: http.port of the daemon config].")
@pass_context
@handle_errors
def dashboard(obj: Context, tenants: tuple[str, ...], host: str | None,
              port: int | None) -> None:
    """Serve the read-only dashboard alone (the daemon `syncd run` serves it too)."""
    from syncd import secrets
    from syncd.web import WebApp, WebContext, WebServer
    from syncd.web import dashboard as dashboard_routes

    http = obj.settings.daemon.http
    host = host or http.host
    token = None
    if http.auth_token is not None:
        token = secrets.resolve(http.auth_token, base_dir=obj.settings.file.parent)
        secrets.register(token)
    found = obj.tenant_set(tenants, offline=True)
    log_broken(found.broken)  # the others are served
    loaded = found.loaded
    context = WebContext(settings=obj.settings, db=obj.database(), plugins=obj.plugins,
                         extras={"tenants": loaded, "auth_token": token, "http_host": host})
    app = WebApp()
    dashboard_routes.register(app, context)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # the server thread inherits it
    port = http.port if port is None else port
    try:
        server = WebServer(app, host=host, port=port).start()
    except OSError as exc:
        message = f"dashboard: cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise ConfigError(message) from None
    err.print(f"dashboard on {server.url}/dashboard ({len(loaded)} tenant(s)); Ctrl-C stops",
              highlight=False)
    try:
        signal.sigwait(stop_signals)
    finally:
        server.stop()


@main.command()
@click.argument("tenant")
@click.option("--counts/--no-counts", default=True, show_default=True,
              help="Read the account once to count the records using each name.")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json",
              show_default=True)
@LANG_OPTION
@pass_context
@handle_errors
def inspect(obj: Context, tenant: str, counts: bool, fmt: str, lang: str | None) -> None:
    """Show the account's pipelines, stages, loss reasons, activity types, fields and users,
    with how many records use each (needs only plugin and connection: the mapping may be
    missing or invalid)."""
    from syncd.onboarding import read_vocabulary
    from syncd.onboarding.connect import tenant_account

    account = tenant_account(obj.settings, tenant, obj.plugins.connectors)
    found = read_vocabulary(account.connector(obj.settings, obj.database()), counts=counts)
    data = dict(found.inspection.__dict__)
    if found.usage is not None:
        data["usage"] = found.usage.as_dict()
    if fmt == "json":
        out.print_json(json.dumps(data, ensure_ascii=False, default=str))
        return
    from syncd.onboarding.show import print_vocabulary

    print_vocabulary(out, found, reader_language(lang, obj.settings.tenant_files().get(tenant)))


def _gates(obj: Context, key: str) -> tuple[Tenant, Any, list[Any]]:
    from syncd.onboarding.gates import read_drift

    tenant = obj.tenants([key])[0]
    connector = tenant.make_connector(obj.database())
    return tenant, connector, read_drift(tenant, connector)


@main.command()
@click.argument("tenant")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_context
@handle_errors
def drift(obj: Context, tenant: str, fmt: str) -> None:
    """Where the CRM's own settings (stage rotting, loss reasons, required fields) differ
    from the Sales Book; reads the CRM, changes nothing."""
    _, connector, found = _gates(obj, tenant)
    connector.close()
    if fmt == "json":
        sys.stdout.write(json.dumps([d.as_dict() for d in found], ensure_ascii=False,
                                    indent=2, default=str) + "\n")
        return
    for item in found:
        how = "syncd apply" if item.automatic else f"by hand: {item.manual}"
        out.print(f"- {item.what} [{how}]", highlight=False)
    out.print(f"{len(found)} difference(s), {sum(d.automatic for d in found)} automatic")


@main.command()
@click.argument("tenant")
@pass_context
@handle_errors
def plan(obj: Context, tenant: str) -> None:
    """The changes `syncd apply` would make in the CRM so it enforces the Sales Book."""
    from syncd.onboarding.gates import plan as make_plan

    _, connector, found = _gates(obj, tenant)
    connector.close()
    changes = make_plan(found)
    for change in changes:
        out.print(f"{change.kind} {change.label!r}: {change.before!r} -> {change.after!r}",
                  highlight=False)
    out.print(f"{len(changes)} change(s) to apply")


@main.command("apply")
@click.argument("tenant")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--revert", "revert_id", type=int, help="Undo the recorded change with this id.")
@click.option("--last", is_flag=True, help="With --revert omitted: undo the last apply.")
@click.option("--list", "list_changes", is_flag=True, help="Show the recorded changes.")
@pass_context
@handle_errors
def apply_gates(obj: Context, tenant: str, yes: bool, revert_id: int | None, last: bool,
                list_changes: bool) -> None:
    """Make the CRM enforce the Sales Book (the changes `syncd plan` prints), recorded
    in the store; --revert ID / --last undo recorded changes."""
    from syncd.onboarding import gates

    database = obj.database()
    if list_changes:
        for row in gates.recorded(database, tenant):
            state = f"reverted {row.reverted_at:%Y-%m-%d %H:%M}" if row.reverted_at else "applied"
            out.print(f"{row.id} {row.applied_at:%Y-%m-%d %H:%M} {row.kind} {row.label!r}: "
                      f"{row.before!r} -> {row.after!r} ({state})", highlight=False)
        return
    loaded = obj.tenants([tenant])[0]
    connector = loaded.make_connector(database)
    try:
        if revert_id is not None or last:
            rows = gates.to_revert(database, tenant, revert_id)
            labels = [f"undo {r.id}: {r.kind} {r.label!r}" for r in rows]
        else:
            changes = gates.plan(gates.read_drift(loaded, connector))
            labels = [f"{c.kind} {c.label!r}: {c.before!r} -> {c.after!r}" for c in changes]
        for label in labels:
            out.print(label, highlight=False)
        if not labels:
            out.print("nothing to change")
            return
        if not yes and not click.confirm(f"make these {len(labels)} change(s) in the CRM?"):
            out.print("nothing changed")
            return
        if revert_id is not None or last:
            gates.revert(database, connector, rows)
        else:
            for row in gates.apply(database, loaded, connector, changes):
                out.print(f"applied {row.id}: {row.kind} {row.label!r}", highlight=False)
        out.print(f"{len(labels)} change(s) made")
    finally:
        connector.close()


@main.command()
@click.argument("tenant")
@click.option("--plugin", help="The connector (see `syncd plugins`); --export implies "
              "spreadsheet.")
@click.option("--connection", "connection", multiple=True, metavar="KEY=VALUE",
              help="A connection setting; a secret as KEY=$env:NAME or KEY=$file:PATH.")
@click.option("--export", "export", type=click.Path(exists=True),
              help="A CRM export (a .xlsx, a .csv or a folder of .csv files) instead of a CRM.")
@click.option("--salesbook", help="The Sales Book key [default: the best-matching one].")
@click.option("--timezone", default=None, help="The client's IANA timezone [default: "
              "Europe/Moscow for ru, else UTC, with a TODO].")
@click.option("--currency", default=None, help="The client's currency [default: RUB for "
              "ru, else EUR].")
@click.option("--language", type=click.Choice(["en", "ru"]), default=None,
              help="The tenant's language [default: ru when the account's stage names are "
              "Russian, else en].")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write here [default: <tenants_dir>/TENANT.yaml].")
@click.option("--counts/--no-counts", default=True, show_default=True,
              help="Read the account once to count records per stage, reason, type, field.")
@click.option("--force", is_flag=True, help="Overwrite an existing tenant file.")
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: take the flags and defaults.")
@pass_context
@handle_errors
def init(obj: Context, tenant: str, plugin: str | None, connection: tuple[str, ...],
         export: str | None, salesbook: str | None, timezone: str | None,
         currency: str | None, language: str | None, output: str | None, counts: bool,
         force: bool, yes: bool) -> None:
    """Draft a commented tenant file from the account's own vocabulary (see
    docs/onboarding.md): connect, read pipelines, stages, loss reasons, activity types,
    fields and users, pick a Sales Book and map what can be guessed; the rest is TODO."""
    from syncd.onboarding.init import InitOptions, run_init

    interactive = not yes and sys.stdin.isatty()
    options = InitOptions(
        tenant=tenant, plugin=plugin, connection=list(connection), export=export,
        salesbook=salesbook, timezone=timezone, currency=currency, language=language,
        output=Path(output) if output else None, counts=counts, force=force,
        interactive=interactive)
    result = run_init(obj.settings, obj.plugins.connectors, options, database=obj.database)
    t = translator(reader_language(language, result.path), "cli")  # the drafted language
    drafted = t.gettext("{path}: {decided} mapping line(s) drafted, {todos} TODO(s) left")
    err.print(escape(drafted.format(path=result.path, decided=result.draft.decided,
                                    todos=len(result.draft.todos))), highlight=False)
    for key in result.draft.todos:
        err.print(f"  [yellow]TODO[/] {key}", highlight=False)
    after = t.gettext("next: syncd check, then syncd sync {tenant} --no-write, then "
                      "syncd report {tenant}")
    err.print(escape(after.format(tenant=tenant)), highlight=False)


@main.command()
@click.argument("tenant")
@click.option("--kind", type=click.Choice(["weekly", "monthly"]), required=True)
@click.option("--period", help="2026-W49 (weekly) or 2026-11 (monthly) [default: the latest].")
@click.option("--dry-run", is_flag=True,
              help="Print what would be sent, to whom; send nothing, claim nothing.")
@pass_context
@handle_errors
def digest(obj: Context, tenant: str, kind: str, period: str | None, dry_run: bool) -> None:
    """A tenant's weekly (managers) or monthly (director) digest: preview it, or send a
    missed one now (an address that already got it is not sent it again)."""
    from syncd.digests.render import as_text
    from syncd.digests.service import DigestService

    loaded = obj.tenants([tenant], offline=True)[0]
    if loaded.config.digests is None:
        raise ConfigError(f"{loaded.file}: digests: the tenant has no digests configured "
                          "(see docs/digests.md)")
    service = DigestService(obj.database(), lambda: [loaded])
    try:
        if dry_run:
            slot, found = service.preview(loaded, kind, period)
        else:
            outcomes = service.send_period(loaded, kind, period)
    except ValueError as exc:
        raise ConfigError(f"--period: {exc}") from None
    if not dry_run:
        for outcome in outcomes:
            line = f"{outcome.address}: {outcome.status}"
            out.print(line + (f" ({outcome.error})" if outcome.error else ""), highlight=False)
        if not outcomes:
            out.print("nothing to send: every address has it already (or is being sent it)")
        if any(o.status in {"retry", "failed"} for o in outcomes):
            sys.exit(exitcodes.TENANT_FAILED)
        return
    out.print(f"# {kind} digest of {loaded.key} for {slot.period} (due "
              f"{slot.at:%Y-%m-%d %H:%M %Z}); dry run: nothing is sent", highlight=False)
    for target, text, reason in found:
        status = f" [{reason}]" if reason else ""
        out.print(f"\n== to {target.address} ({target.who}){status}", highlight=False)
        out.print(as_text(text) if text is not None else "(nothing: " + (reason or "") + ")",
                  highlight=False, markup=False)
    if not found:
        out.print("no recipients configured for this kind (digests.managers / "
                  "digests.director)")


@main.command("secret-key")
def secret_key() -> None:
    """Print a new key for OAuth tokens at rest (for SYNCD_SECRET_KEY or secret_key_file)."""
    from syncd.oauth import TokenCipher

    click.echo(TokenCipher.generate_key())


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@pass_context
@handle_errors
def db_upgrade(obj: Context) -> None:
    """Apply schema migrations (also done automatically by every command)."""
    database = obj.database()
    out.print(f"database {store.redacted_url(obj.settings.database_url)} at revision "
              f"{database.current_revision()}")


@main.group()
def tokens() -> None:
    """Dashboard access tokens: per tenant (read-only, that client only) or admin (all)."""


@tokens.command("create")
@click.argument("tenant", required=False)
@click.option("--admin", is_flag=True, help="A token for every tenant (the consultancy).")
@click.option("--label", default="", help="Who holds it (shown by `syncd tokens list`).")
@pass_context
@handle_errors
def tokens_create(obj: Context, tenant: str | None, admin: bool, label: str) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from syncd.store.tokens import create_token

    if admin == (tenant is not None):
        message = "syncd tokens create: give exactly one of TENANT or --admin"
        raise ConfigError(message)
    if tenant is not None and tenant not in obj.settings.tenant_files():
        message = f"no tenant {tenant!r} in {obj.settings.tenants_dir}"
        raise ConfigError(message)
    with obj.database().session() as session:
        row, plain = create_token(session, tenant, label)
        token_id = row.id
    where = f"/t/{plain}/dashboard" + (f"/{tenant}" if tenant else "")
    out.print(f"token {token_id} for {tenant or 'all tenants (admin)'}: {plain}",
              highlight=False)
    out.print(f"link: http://HOST:PORT{where}  (or header Authorization: Bearer <token>)",
              highlight=False)
    err.print("shown once: only its hash is stored", highlight=False)


@tokens.command("list")
@click.option("--all", "everything", is_flag=True, help="Include revoked tokens.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_context
@handle_errors
def tokens_list(obj: Context, everything: bool, fmt: str) -> None:
    """The tokens (id, prefix, tenant, label, created, revoked); never the tokens."""
    from syncd.store.tokens import list_tokens

    with obj.database().session() as session:
        rows = [{"id": r.id, "prefix": r.prefix + "…", "tenant": r.tenant_key,
                 "admin": r.tenant_key is None, "label": r.label,
                 "created_at": r.created_at.isoformat(timespec="seconds"),
                 "revoked_at": r.revoked_at.isoformat(timespec="seconds")
                 if r.revoked_at else None}
                for r in list_tokens(session, include_revoked=everything)]
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        out.print("no tokens")
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        out.print(f"{r['id']:>4}  {r['prefix']:<12} {r['tenant'] or '(admin)':<20} "
                  f"{r['created_at']}  {state}  {r['label']}", highlight=False)


@tokens.command("revoke")
@click.argument("token_id", type=int)
@pass_context
@handle_errors
def tokens_revoke(obj: Context, token_id: int) -> None:
    """Revoke a token by its id: refused from the next request on."""
    from syncd.store.tokens import revoke_token

    with obj.database().session() as session:
        row = revoke_token(session, token_id)
        if row is None:
            message = f"no token with id {token_id} (see `syncd tokens list --all`)"
            raise ConfigError(message)
        out.print(f"token {token_id} ({row.tenant_key or 'admin'}) revoked", highlight=False)


@main.command()
@click.option("--config-dir", type=click.Path(file_okay=False), default="config/demo",
              show_default=True, help="The demo's config folder.")
@click.option("--keep", is_flag=True, help="Keep the demo database from the last run.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, config_dir: str, keep: bool) -> None:
    """Run the main job on SQLite against a local fake CRM with a sample client."""
    from syncd.demo import run_demo

    sys.exit(run_demo(Path(config_dir), keep=keep, console=out))


if __name__ == "__main__":  # pragma: no cover
    main()
