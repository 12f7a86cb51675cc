"""The report as one self-contained HTML page: the dashboard a sales head opens.

The page carries the report JSON (``syncd.report/1``) in a ``<script type=
"application/json">`` block and a small inline script draws everything from it: summary
cards, violations by rule and owner, client karma and segments, the people leaderboard, the
funnel, forward moves against the target and the contact matrix, as inline SVG and CSS. No
external file, font or network request is needed, so the same page works served by the
daemon (``syncd.web.dashboard``) and written to disk (``syncd report --format html``).
Every text goes through ``textContent``: CRM names cannot inject markup.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
CSS = (TEMPLATES / "dashboard.css").read_text(encoding="utf-8")
SCRIPT = (TEMPLATES / "dashboard.js").read_text(encoding="utf-8")

BODY = """<header><h1 id="tenant"></h1><div class="meta" id="meta"></div></header>
<main>
<section class="wide"><div class="cards" id="cards"></div><div id="plan"></div></section>
<section><h2>Open violations by rule</h2><div id="violations"></div></section>
<section><h2>Open violations by owner</h2><div id="by-owner"></div></section>
<section><h2>Client karma (top 15)</h2><div id="karma"></div></section>
<section><h2>Segments</h2><div id="segments"></div></section>
<section><h2>Karma leaderboard <span id="board-current-title" class="muted"></span></h2>
<div id="board-current"></div><p class="muted">* bonus not final until the month ends</p></section>
<section><h2>Last month <span id="board-previous-title" class="muted"></span></h2>
<div id="board-previous"></div><h2>Managers (mean of the team)</h2><div id="managers"></div>
</section>
<section class="wide"><h2>Funnel by canonical stage</h2><div id="funnel"></div>
<div id="funnel-table"></div></section>
<section><h2>Forward moves a week (net), target <span id="moves-target"></span></h2>
<div id="moves"></div></section>
<section><h2>Lead-source conversion</h2><div id="sources"></div></section>
<section class="wide"><h2>Contact matrix</h2><p class="legend muted"><span>number:
calls + visits</span><span>K: contract</span><span>dashed: planned</span></p>
<div id="matrix"></div></section>
</main>"""


def embed_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(report: dict[str, Any], *, refresh_seconds: int | None = None) -> str:
    """The whole page for one tenant's report (one self-contained document)."""
    title = html.escape(f"syncd · {report.get('tenant', '')}")
    refresh = (f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">'
               if refresh_seconds else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"{refresh}<title>{title}</title><style>{CSS}</style></head><body>{BODY}"
        f"<script type=\"application/json\" id=\"report-data\">{embed_json(report)}</script>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
