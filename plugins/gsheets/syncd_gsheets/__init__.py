"""The gsheets plugin for syncd (work in progress: registers no connector yet)."""
