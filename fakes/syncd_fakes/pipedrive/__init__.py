"""A local fake Pipedrive account (tests, demo, benchmark)."""
