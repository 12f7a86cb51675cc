"""The plugin system: entry points, the registry, and the docs that promise them."""

from __future__ import annotations

import inspect
import re
import types
from datetime import date

import pytest
from support import REPO

from syncd import Connector, Inspection, hookimpl, hookspecs
from syncd.errors import PluginError
from syncd.plugins import ConnectorRegistry, entry_point_names, make_plugin_manager


def test_the_installed_distribution_declares_the_builtin_plugin() -> None:
    assert "pipedrive" in entry_point_names()
    plugins = make_plugin_manager()
    assert "pipedrive" in plugins.connectors


def _connector(name: str, module: str) -> type[Connector]:
    def pull(self, stream, cursor, context):
        return iter(())

    def inspect_(self):
        return Inspection()

    cls = type(f"C_{name}", (Connector,), {"name": name, "pull": pull, "inspect": inspect_})
    cls.__module__ = module
    return cls


def test_a_connector_name_registered_twice_names_both_plugins() -> None:
    registry = ConnectorRegistry()
    registry.add(_connector("crm", "first_plugin"))
    with pytest.raises(PluginError, match="by first_plugin and by second_plugin"):
        registry.add(_connector("crm", "second_plugin"))


def test_an_inline_plugin_registers_through_the_hook() -> None:
    plugin = types.ModuleType("inline_plugin")
    connector = _connector("inline", "inline_plugin")
    plugin.syncd_register_connectors = hookimpl(lambda registry: registry.add(connector))
    plugins = make_plugin_manager(load_entrypoints=False, extra=(plugin,))
    assert plugins.connectors.get("inline") is connector
    with pytest.raises(PluginError, match="no connector named 'pipedrive'"):
        plugins.connectors.get("pipedrive")


def test_blocked_plugins_are_not_loaded(monkeypatch) -> None:
    monkeypatch.setenv("SYNCD_DISABLE_PLUGINS", "pipedrive")
    assert "pipedrive" not in make_plugin_manager().connectors


def test_every_hook_is_documented_and_in_the_plugin_guide() -> None:
    guide = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    hooks = [name for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("syncd_")]
    assert hooks, "hookspecs defines hooks"
    for name in hooks:
        func = getattr(hookspecs, name)
        assert func.__doc__ and ":param" in func.__doc__, f"{name} lacks a documented spec"
        assert name in guide, f"{name} is missing from docs/plugins.md"


def test_report_schema_doc_lists_every_top_level_key() -> None:
    from syncd import report

    doc = (REPO / "docs" / "report-schema.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(\w+)` \|", doc, flags=re.MULTILINE))
    produced = set(re.findall(r'^\s+"(\w+)":', inspect.getsource(report.build_report),
                              flags=re.MULTILINE))
    assert produced and produced <= documented, produced - documented


def test_a_writer_is_held_by_its_connector_and_answers_for_it() -> None:
    """Write-back is an object the connector holds (``Connector.writer``), not a mixin; a
    writer implementing one form of each pair gets the other (``syncd.connector.Writer``)."""
    from syncd_amocrm import AmoCRMConnector
    from syncd_bitrix24 import Bitrix24Connector
    from syncd_pipedrive import PipedriveConnector

    from syncd.connector import FieldWrite, TaskCreate, Writer, WriteResult

    for cls in (AmoCRMConnector, Bitrix24Connector, PipedriveConnector):
        assert not issubclass(cls, Writer), f"{cls.__name__} inherits its writer"

    class Batched(Writer):
        def __init__(self) -> None:
            self.calls: list[str] = []

        def write_fields(self, changes):
            self.calls.append(f"write_fields:{len(changes)}")
            return [WriteResult(ok=True, crm_id=c.external_id) for c in changes]

        def find_tasks(self, tasks):
            self.calls.append(f"find_tasks:{len(tasks)}")
            return {t.marker: "7" for t in tasks if t.deal_id == "1"}

        def create_task(self, task):
            self.calls.append("create_task")
            return WriteResult(ok=True, crm_id=task.deal_id)

    connector = _connector("held", "held_plugin")(object(), tenant="t")
    with pytest.raises(NotImplementedError, match="held does not support write-back"):
        connector.write_fields([FieldWrite("deal", "1", "f", 1.0)])
    writer = connector.writer = Batched()
    assert connector.write_field(FieldWrite("deal", "9", "f", 1.0)).crm_id == "9"
    task = TaskCreate("1", None, "s", "n", "syncd:v1", date(2026, 1, 1))
    assert connector.find_task(task) == "7"
    assert [r.crm_id for r in connector.create_tasks([task, task])] == ["1", "1"]
    assert writer.calls == ["write_fields:1", "find_tasks:1", "create_task", "create_task"]
    assert task.marked_note == "n\n\n[syncd:v1]"
    assert TaskCreate("1", None, "s", "x [syncd:v1]", "syncd:v1",
                      date(2026, 1, 1)).marked_note == "x [syncd:v1]"
