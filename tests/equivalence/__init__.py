"""Cross-CRM equivalence: one logical client dataset, rendered natively for every source.

``dataset`` builds the logical client (companies, people, deals, activities, stage history,
and the violations an independent reading of ``salesbook-spec.md`` expects per deal);
``render_*`` turn it into each CRM's own payloads for its fake server; ``harness`` runs the
real CLI against the fakes and normalises the reports to the dataset's logical keys.
"""
