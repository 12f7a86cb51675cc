"""The project's name and version: a leaf module, so low layers (``syncd.http``) can name
the version without importing the package's plugin API (``syncd/__init__.py``)."""

from __future__ import annotations

__version__ = "0.1.0"
PROJECT_NAME = "syncd"
