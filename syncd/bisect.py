"""Send a batch; when the CRM rejects it for one record, bisect to find that record.

A CRM that validates a batch as a whole (amoCRM's ``PATCH``/``POST`` arrays answer 400 with
``validation-errors`` and apply nothing) would otherwise force one request per record to
find the bad one. Halving the rejected batch finds one bad record among ``n`` in at most
``2 * ceil(log2(n))`` further requests (each level sends both halves; the good half is
done, the bad half is split again), and several bad records in proportionally more. Each
record that is rejected alone gets its own failure; every other record is sent in some
accepted batch. Only rejections ``rejected(error)`` says concern the items are bisected;
anything else (auth, rate limit, an outage) propagates at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def send_bisecting(
    items: Sequence[Item],
    send: Callable[[list[Item]], list[Result]],
    *,
    rejected: Callable[[Exception], bool],
    failed: Callable[[Item, Exception], Result],
    on_split: Callable[[int, Exception], None] | None = None,
) -> list[Result]:
    """Results of ``items``, in order. ``send(batch)`` returns one result per item of the
    batch or raises; ``failed(item, error)`` is the result of an item rejected alone;
    ``on_split(size, error)`` is told of each rejected batch that is split."""
    batch = list(items)
    if not batch:
        return []
    try:
        return send(batch)
    except Exception as exc:
        if not rejected(exc):
            raise
        if len(batch) == 1:
            return [failed(batch[0], exc)]
        if on_split is not None:
            on_split(len(batch), exc)
    middle = len(batch) // 2
    return (send_bisecting(batch[:middle], send, rejected=rejected, failed=failed,
                           on_split=on_split)
            + send_bisecting(batch[middle:], send, rejected=rejected, failed=failed,
                             on_split=on_split))


__all__ = ["send_bisecting"]
