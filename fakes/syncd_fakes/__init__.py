"""Fake CRM servers: test doubles, benchmark loads and the demo's sample clients.

Kept out of the packages production loads (``syncd`` and the ``syncd_*`` plugins never
import it; import-linter checks that). Each fake follows its vendor's documented API,
quirks included, and serves on 127.0.0.1:

- ``syncd_fakes.http``: the shared HTTP server, request faults and ``Weather``;
- ``syncd_fakes.pipedrive`` / ``amocrm`` / ``bitrix24`` / ``gsheets``: one CRM each
  (``server.py``; ``sample.py`` holds the sample client's data);
- ``syncd_fakes.demo``: the sample client ``syncd demo`` runs against, per plugin.
"""
