"""Cross-CRM equivalence figures: one client, every source, against the Sales Book spec.

    python bench/equivalence_report.py [--sources pipedrive,amocrm,...] [--diff] [--json FILE]
                                       [--keep DIR]

Serves the logical client of ``tests/equivalence`` from the Pipedrive, amoCRM, Bitrix24 and
Google Sheets fakes (and as the sheet's CSV and XLSX exports), runs ``syncd sync`` and
``syncd report --as-of`` exactly as ``tests/test_equivalence.py`` does (SQLite in a
temporary folder), and prints per source how many spec-expected violation rows it found
(and how many rows it reported that the spec does not expect), how many companies' client
karma, segment means and funnel closures (deals lost at each stage, wins from the last)
agree with the spec, and whether the people karma equals
what most sources give. ``--diff`` lists every disagreement. ``--keep DIR`` runs in DIR and
leaves the config, the tenants, the exports and the SQLite store there, so that
``. DIR/env.sh; syncd --config DIR/syncd.yaml report bitrix24 --as-of 2026-11-30T12:00:00``
(or ``explain``) can be run by hand afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from equivalence import dataset, harness, spec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=",".join(harness.SOURCES))
    parser.add_argument("--diff", action="store_true", help="list every disagreement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args(argv)
    sources = tuple(s for s in args.sources.split(",") if s)
    deals = dataset.build()
    if args.keep:
        root = args.keep.resolve()
        root.mkdir(parents=True, exist_ok=True)
        outcomes = harness.run(root, f"sqlite:///{root / 'db' / 'syncd.db'}", sources)
    else:
        with tempfile.TemporaryDirectory(prefix="syncd-equivalence-") as tmp:
            root = Path(tmp)
            outcomes = harness.run(root, f"sqlite:///{root / 'db' / 'syncd.db'}", sources)
    print(f"as of {dataset.AS_OF} ({dataset.TZ.key}): {len(deals)} deals, "
          f"{len(dataset.COMPANIES)} companies, {len(spec.expected_rows(deals))} expected rows")
    figures = {}
    people = harness.consensus_values([o.people for o in outcomes.values() if o.ok])
    for source, outcome in outcomes.items():
        if not outcome.ok:
            print(f"{source:<10} FAILED: {outcome.error}")
            figures[source] = {"ok": False, "error": outcome.error}
            continue
        agreement = spec.agreement(outcome, deals)
        same_people = outcome.people == people
        print(agreement.line(source)
              + f", people karma {'=' if same_people else '≠'} most sources")
        figures[source] = {"ok": True, "rows": [agreement.rows_found, agreement.rows_expected],
                           "false_rows": len(agreement.false),
                           "karma": [agreement.karma_ok, agreement.karma_total],
                           "segments": [agreement.segments_ok, agreement.segments_total],
                           "funnel": [agreement.funnel_ok, agreement.funnel_total],
                           "people_equal": same_people}
        if args.diff:
            for row in agreement.missing:
                print(f"    missing  {row}")
            for row in agreement.false:
                print(f"    false    {row}")
            for company, (got, want) in agreement.karma_wrong.items():
                print(f"    karma    {company}: got {got}, spec {want}")
            for segment, (got, want) in agreement.segments_wrong.items():
                print(f"    segment  {segment}: got {got}, spec {want}")
            for key, (got, want) in agreement.funnel_wrong.items():
                print(f"    funnel   {key}: got {got}, spec {want}")
            for key in sorted(set(outcome.people) | set(people)):
                if outcome.people.get(key) != people.get(key):
                    print(f"    people   {key}: {outcome.people.get(key)}, "
                          f"most sources {people.get(key)}")
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
