"""`syncd demo`: the main job, end to end, with no credentials and nothing else installed.

Every demo tenant in ``config/demo/tenants`` names a plugin whose sample client the fakes
package serves (``syncd_fakes.demo``, a test-support package production never loads). The
demo serves it on 127.0.0.1, points the tenant at it, runs one real pass (pull over HTTP,
store in SQLite, audit, karma, write-back to the fake), and prints what was pulled, the
violations, the karma and where the report is.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from rich.console import Console
from syncd_fakes.demo import demo_account

from syncd import exitcodes, store
from syncd.config import Settings, load_settings, load_tenant
from syncd.daemon import Runner
from syncd.display import print_people_and_kpis, print_report, print_summary
from syncd.errors import ConfigError
from syncd.logs import setup_logging
from syncd.plugins import Plugins, make_plugin_manager
from syncd.report import build_report, write_report
from syncd.salesbook import read_yaml
from syncd.sync import PassOptions

_ID = re.compile(r"/\d+")


def run_demo(config_dir: Path, *, keep: bool, console: Console) -> int:
    settings = load_settings(config_dir / "syncd.yaml")
    setup_logging(settings.daemon.log_level)
    plugins = make_plugin_manager()
    if not keep:
        _reset_sqlite(settings.database_url)
    database = store.Database(settings.database_url)
    database.upgrade()
    status = exitcodes.OK
    for key in settings.tenant_files():
        status = max(status, _demo_tenant(settings, plugins, database, key, console))
    return status


def _reset_sqlite(url: str) -> None:
    prefix = "sqlite:///"
    if url.startswith(prefix):
        path = Path(url[len(prefix):])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _demo_tenant(settings: Settings, plugins: Plugins, database: store.Database, key: str,
                 console: Console) -> int:
    # The demo account's connection is only known once the fake runs, so the plugin is
    # looked up from the tenant file itself, before its connection is validated.
    plugin = str(read_yaml(settings.tenant_files()[key]).get("plugin", ""))
    plugins.connectors.get(plugin)  # an unknown or blocked plugin fails here, by name
    served = demo_account(plugin)
    if served is None:
        message = f"plugin {plugin!r} has no demo account in syncd_fakes.demo"
        raise ConfigError(message)
    with served as (connection, server):
        tenant = load_tenant(settings, key, plugins.connectors, connection_overrides=connection)
        console.print(f"[bold]syncd demo[/]: tenant {key} on a local fake "
                      f"{tenant.config.plugin} at {connection['base_url']}")
        runner = Runner(settings, plugins, database)
        outcome = runner.run_one_off(tenant, PassOptions())
        if not outcome.ok or outcome.summary is None:
            console.print(f"[red]demo pass failed:[/] {outcome.error}")
            return exitcodes.TENANT_FAILED
        print_summary(console, outcome.summary.as_dict())
        report = build_report(database, tenant)
        path = write_report(report, settings.reports_dir)
        print_report(console, report, limit=15)
        print_people_and_kpis(console, report)
        _print_received(console, server)
    console.print(f"\nreport (JSON): [bold]{path}[/]")
    console.print(f"database: {store.redacted_url(settings.database_url)}")
    console.print(f"again as a table: syncd --config {settings.file} report {key}")
    return exitcodes.OK


def _print_received(console: Console, server: object) -> None:
    writes = getattr(server, "writes", None)
    if writes is None:
        return
    kinds = Counter(f"{w[0]} {_ID.sub('/{id}', w[1].split('?')[0])}" for w in writes)
    console.print("write-backs received by the fake CRM: "
                  + (", ".join(f"{n} x {k}" for k, n in sorted(kinds.items())) or "none"))
