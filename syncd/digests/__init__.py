"""Digests: a weekly one to each manager, a monthly one to the director, by e-mail and Telegram.

The data path reads top to bottom:

- ``syncd.digest_config`` (beside ``syncd.config``, in the settings layer): the tenant
  file's ``digests:`` block (pydantic; recipients, channels, when).
- ``periods``: which period is due at a moment, in the tenant's own timezone.
- ``content``: what a digest says, built from the tenant's report (``syncd.report``).
- ``render``: the same digest as plain text, an e-mail's HTML and a Telegram message.
- ``channels``: SMTP (``smtplib``) and the Telegram Bot API (``sendMessage``).
- ``service``: claim a (tenant, kind, recipient, period) row in the store, send, mark sent;
  called by the daemon's digest timer and by ``syncd digest``.

Delivery is at-least-once with one claim per period and recipient: see ``service`` and
docs/digests.md for why, and for the one window in which a duplicate can happen.
"""
