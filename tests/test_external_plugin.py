"""A CRM plugin defined outside the core is discovered through the entry point and used.

The plugin below is written to a temporary folder as a module plus a ``.dist-info`` with an
``entry_points.txt`` — exactly what `pip install` of a third-party package leaves behind —
and put on PYTHONPATH of a `syncd` subprocess. Nothing in syncd knows its name.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

from support import run_syncd, write_config

PLUGIN_SOURCE = textwrap.dedent('''
    """memcrm: a CRM export in a JSON file, as a third-party syncd plugin."""
    import json
    from datetime import datetime
    from syncd import Connector, ConnectionSettings, Inspection, Page, hookimpl
    from syncd.records import Deal, Pipeline, Stage, Company, Activity

    class MemSettings(ConnectionSettings):
        data_file: str

    def _dt(text):
        return datetime.fromisoformat(text) if text else None

    class MemConnector(Connector):
        name = "memcrm"
        settings_model = MemSettings
        streams = ("pipelines", "stages", "companies", "deals", "activities")

        def pull(self, stream, cursor, context):
            data = json.load(open(self.settings.data_file))
            build = {
                "pipelines": lambda r: Pipeline(r["id"], r["name"]),
                "stages": lambda r: Stage(r["id"], r["pipeline"], r["name"], r["order"]),
                "companies": lambda r: Company(r["id"], r["name"], fields=r.get("fields", {})),
                "deals": lambda r: Deal(r["id"], r["title"], r["status"], r["pipeline"],
                                        r["stage"], owner_id="u1", company_id=r.get("company"),
                                        value=r.get("value", 0), created_at=_dt(r["created"]),
                                        stage_changed_at=_dt(r["created"]),
                                        won_at=_dt(r.get("won")), fields=r.get("fields", {})),
                "activities": lambda r: Activity(r["id"], r["type"], done=r["done"],
                                                 done_at=_dt(r.get("done_at")),
                                                 deal_id=r["deal"]),
            }[stream]
            yield Page(stream=stream, records=[build(r) for r in data[stream]], requests=1)

        def inspect(self):
            return Inspection()

    @hookimpl
    def syncd_register_connectors(registry):
        registry.add(MemConnector)
''')

DATA = {
    "pipelines": [{"id": "p1", "name": "Main"}],
    "stages": [{"id": "s1", "pipeline": "p1", "name": "Talk", "order": 1},
               {"id": "s2", "pipeline": "p1", "name": "Offer", "order": 2}],
    "companies": [{"id": "c1", "name": "Bank One", "fields": {"Sector": "Banks"}}],
    "deals": [
        {"id": "d1", "title": "Old talk", "status": "open", "pipeline": "p1", "stage": "s1",
         "created": "2026-01-05T10:00:00+00:00", "company": "c1"},
        {"id": "d2", "title": "Won offer", "status": "won", "pipeline": "p1", "stage": "s2",
         "created": "2026-02-01T10:00:00+00:00", "won": "2026-03-01T10:00:00+00:00",
         "company": "c1", "value": 10000, "fields": {"Source": "Website"}},
    ],
    "activities": [{"id": "a1", "type": "call", "done": True,
                    "done_at": "2026-02-02T10:00:00+00:00", "deal": "d2"}],
}


def install_plugin(root: Path) -> Path:
    site = root / "site"
    dist = site / "syncd_memcrm-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "syncd_memcrm.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: syncd-memcrm\nVersion: 1.0\n",
                                   encoding="utf-8")
    (dist / "entry_points.txt").write_text("[syncd]\nmemcrm = syncd_memcrm\n", encoding="utf-8")
    return site


def test_third_party_plugin_is_discovered_and_used(tmp_path: Path) -> None:
    site = install_plugin(tmp_path)
    data_file = tmp_path / "export.json"
    data_file.write_text(json.dumps(DATA), encoding="utf-8")
    database = tmp_path / "syncd.db"
    tenant = {
        "plugin": "memcrm", "salesbook": "b2b-services-9", "timezone": "UTC",
        "connection": {"base_url": "mem://", "data_file": str(data_file)},
        "mapping": {"stages": {"Main": {"Talk": "briefing", "Offer": "estimate"}},
                    "fields": {"deal": {"lead_source": "Source", "estimate_link": "Link",
                                        "contract_number": "Contract"}}},
        "writeback": {"enabled": False},
    }
    config = write_config(tmp_path, f"sqlite:///{database}", {"memco": tenant})
    env = {"PYTHONPATH": str(site)}

    listed = run_syncd(config, "plugins", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    plugins = {row["name"]: row for row in json.loads(listed.stdout)}
    assert "memcrm" in plugins
    assert plugins["memcrm"]["connectors"] == ["memcrm"]
    assert plugins["memcrm"]["distribution"] == "syncd-memcrm"

    synced = run_syncd(config, "sync", "memco", "--as-of", "2026-04-01", "--format", "json",
                       env=env)
    assert synced.returncode == 0, synced.stderr
    with sqlite3.connect(database) as conn:
        deals = {row[0] for row in conn.execute("select external_id from deals")}
    assert deals == {"d1", "d2"}
    summary = json.loads(synced.stdout)[0]["summary"]
    rules = summary["violations_by_rule"]
    assert rules.get("no_lead_source") == 1  # d1 has no source; d2 has "Website"
    assert rules.get("stalled") == 1  # d1 sat in briefing (7 days) since January


def test_without_the_plugin_the_tenant_is_a_config_error(tmp_path: Path) -> None:
    tenant = {"plugin": "memcrm", "salesbook": "b2b-services-9",
              "connection": {"base_url": "mem://", "data_file": "x"}}
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", {"memco": tenant})
    result = run_syncd(config, "check")
    assert result.returncode == 2
    assert "memco.yaml: plugin: no connector named 'memcrm'" in result.stderr


def test_a_plugin_that_fails_to_import_stops_only_its_tenants(tmp_path: Path) -> None:
    """A broken plugin is named; tenants of the other plugins still sync."""
    site = install_plugin(tmp_path)
    (site / "syncd_memcrm.py").write_text("raise RuntimeError('memcrm is broken')\n",
                                          encoding="utf-8")
    data_file = tmp_path / "export.json"
    data_file.write_text(json.dumps(DATA), encoding="utf-8")
    broken = {"plugin": "memcrm", "salesbook": "b2b-services-9",
              "connection": {"base_url": "mem://", "data_file": str(data_file)}}
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", {"memco": broken})
    env = {"PYTHONPATH": str(site)}

    listed = run_syncd(config, "plugins", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert "pipedrive" in rows["pipedrive"]["connectors"]
    assert "memcrm is broken" in rows["memcrm"]["error"]

    checked = run_syncd(config, "check", env=env)
    assert checked.returncode == 2
    assert "the plugin 'memcrm' failed to load: RuntimeError: memcrm is broken" \
        in checked.stderr
