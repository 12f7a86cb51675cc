"""Exit codes of the `syncd` command, in one place (documented in docs/cli.md)."""

OK = 0  #: everything asked for succeeded
TENANT_FAILED = 1  #: at least one tenant's pass failed (the others ran)
CONFIG_ERROR = 2  #: bad configuration, unknown tenant or plugin, bad arguments
INTERNAL_ERROR = 3  #: an unexpected error (a bug): the traceback is logged
INTERRUPTED = 130  #: stopped by SIGINT/SIGTERM before finishing (committed data is consistent)
