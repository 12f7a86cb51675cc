"""Exit codes of the `syncd` command, in one place (documented in docs/cli.md)."""

OK = 0  #: everything asked for succeeded
TENANT_FAILED = 1  #: at least one tenant's pass failed (the others ran)
CONFIG_ERROR = 2  #: bad configuration, unknown tenant or plugin, bad arguments
INTERNAL_ERROR = 3  #: an unexpected error (a bug): the traceback is logged
#: every pass ran to its end, but some records were quarantined or some CRM writes/tasks were
#: rejected (listed per item in the log and the report; retried on later passes)
PARTIAL = 4
INTERRUPTED = 130  #: stopped by SIGINT/SIGTERM before finishing (committed data is consistent)
