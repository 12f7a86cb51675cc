"""Every hook syncd calls, documented in one place.

Hooks are grouped by lifecycle phase. Implementations import ``hookimpl`` from ``syncd``
and may accept any subset of a hook's arguments (pluggy's opt-in arguments), so arguments
can be added later without breaking plugins. Call order between plugins is not defined
(pluggy calls implementations last-registered-first); do not depend on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from syncd.plugins import ConnectorRegistry

hookspec = pluggy.HookspecMarker("syncd")


# --- registration (once, when the plugin manager is built) ------------------------------
@hookspec
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    """Register CRM connectors: call ``registry.add(MyConnector)`` for each.

    :param registry: the connector registry; ``add`` raises ``PluginError`` when a
        connector name is already taken, naming both plugins.
    Return nothing.
    """


# --- one tenant pass ------------------------------------------------------------------
@hookspec
def syncd_before_sync(tenant: str, plugin: str, full: bool) -> None:
    """Called before a tenant's pass starts pulling.

    :param tenant: the tenant key.
    :param plugin: the connector name serving the tenant.
    :param full: True when cursors are ignored (``--full``).
    Return nothing. An exception here fails this tenant's pass only.
    """


@hookspec
def syncd_after_sync(tenant: str, summary: dict[str, Any]) -> None:
    """Called after a tenant's pass committed (pull, audit, karma, write-back).

    :param tenant: the tenant key.
    :param summary: the pass summary, as printed by ``syncd sync --format json``:
        records pulled per stream, violations opened/resolved/open, writes made.
    Return nothing. Exceptions are logged and do not fail the pass.
    """


@hookspec
def syncd_publish_report(tenant: Any, report: dict[str, Any], options: dict[str, Any]) -> None:
    """Publish a tenant's fresh report somewhere people read it (e.g. Google Sheets tabs).

    Called after each successful live pass, once per entry of the tenant file's
    ``reports:`` section whose key is the plugin's sink name; a plugin ignores calls whose
    ``options["sink"]`` is not its own.

    :param tenant: the loaded ``syncd.config.Tenant``.
    :param report: the report dict (schema ``syncd.report/1``, docs/report-schema.md).
    :param options: that ``reports:`` entry with secrets resolved, plus ``"sink"`` (its key).
    Return nothing. Raise ``SyncdError`` with a clear message on failure: it is logged for
    this tenant and does not fail the pass or other tenants.
    """


@hookspec
def syncd_on_tenant_error(tenant: str, error: BaseException) -> None:
    """Called when a tenant's pass failed (the other tenants go on).

    :param tenant: the tenant key.
    :param error: the exception; its message carries no secret.
    Return nothing. Exceptions are logged and ignored.
    """
