"""The bitrix24 plugin for syncd (work in progress: registers no connector yet)."""
