"""A local fake Google Sheets + Drive API and OAuth token endpoint (tests, benchmark)."""
