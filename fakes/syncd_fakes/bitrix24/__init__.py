"""A local fake Bitrix24 portal (tests, demo, benchmark)."""
