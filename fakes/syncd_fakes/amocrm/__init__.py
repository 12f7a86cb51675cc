"""A local fake amoCRM account (tests, demo, benchmark)."""
