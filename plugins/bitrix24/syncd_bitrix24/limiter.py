"""Bitrix24's limiter: the core's leaky bucket (``syncd.leakybucket``)."""

from syncd.leakybucket import LeakyBucket

__all__ = ["LeakyBucket"]
