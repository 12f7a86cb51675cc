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
    from syncd.audit.registry import RuleRegistry
    from syncd.registry import ConnectorRegistry
    from syncd.sinks import SinkRegistry

hookspec = pluggy.HookspecMarker("syncd")


# --- registration (once, when the plugin manager is built) ------------------------------
@hookspec
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    """Register CRM connectors: call ``registry.add(MyConnector)`` for each.

    :param registry: the connector registry; ``add`` raises ``PluginError`` when a
        connector name is already taken, naming both plugins.
    A connector that writes back holds its write-back half as ``self.writer``, a
    ``syncd.connector.Writer`` (fields and tasks; the connector's write methods hand their
    calls to it). A connector may also implement the optional ``read_gates()`` /
    ``apply_gate(change)`` (``syncd.connector``) for ``syncd drift``/``plan``/``apply``
    (docs/plugins.md), and the classmethod ``deal_url(settings, deal_id) -> str | None``:
    the deal's card in the CRM's web app, built from the connection settings only (no
    request, no secret); the dashboard links each deal to it (docs/dashboard.md).
    Default: ``None`` (no link).
    Return nothing.
    """


@hookspec
def syncd_register_report_sinks(registry: SinkRegistry) -> None:
    """Register report sinks: call ``registry.add(ReportSink(name, options_model, publish))``
    (``syncd.sinks.ReportSink``) for each.

    A tenant file's ``reports: {<name>: {...}}`` is dispatched only to the sink registered
    under ``<name>``. ``syncd check`` validates the block with ``options_model`` (a pydantic
    model; ``{$env}``/``{$file}`` secrets are resolved before it sees them) and rejects a
    name no plugin registered. After each successful live pass the core calls
    ``publish(tenant, report, options)``: ``tenant`` the loaded ``syncd.config.Tenant``,
    ``report`` the report dict (schema ``syncd.report/1``), ``options`` the validated model.
    ``publish`` raises ``SyncdError`` with a clear message on failure: it is logged and
    listed in that tenant's pass summary (``report_sink_failures``) and fails nothing else.

    :param registry: the sink registry; ``add`` raises ``PluginError`` when a name is taken.
    Return nothing.
    """


@hookspec
def syncd_register_rules(registry: RuleRegistry) -> None:
    """Register custom audit rules: call ``registry.add(CustomRule(...))``
    (``syncd.audit.registry.CustomRule``) for each.

    A rule has a code (unique, not a built-in one), a title and an explanation template in
    English and Russian, a ``check(facts, context)`` over the same ``DealFacts`` the
    built-in rules see returning ``Hit`` objects, a severity, a karma weight and whether it
    is on by default. The engine runs the rules a tenant enables (tenant file
    ``rules: {<code>: true|false}``) after the built-in ones; their findings go through the
    same violation lifecycle, report, CRM texts and karma. See docs/plugins.md.

    :param registry: the rule registry; ``add`` raises ``PluginError`` on a taken or
        built-in code or an incomplete rule.
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
    """Deprecated (kept for one release): register a sink with
    ``syncd_register_report_sinks`` instead.

    Called after each successful live pass, once per entry of the tenant file's
    ``reports:`` section whose key no plugin registered as a sink, broadcast to every
    plugin implementing this hook; a plugin ignores calls whose ``options["sink"]`` is not
    its own. While any plugin implements it, ``syncd check`` reports such keys as warnings.

    :param tenant: the loaded ``syncd.config.Tenant``.
    :param report: the report dict (schema ``syncd.report/1``, docs/report-schema.md),
        ``violations`` and ``client_karma`` as lists (read whole for this hook; a sink
        registered with ``ReportSink(streamed=True)`` gets them as re-iterable rows).
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
