"""The register: the partnership's lasting record of every disagreement.

Temporal holds a case while it runs and forgets it once its namespace's
retention passes; the register keeps it for years, in one relational
database (SQLite as the embedded default, PostgreSQL in production), through
SQLAlchemy 2 with Alembic migrations.

The map:

- ``register.tables``: the tables. Non-identifying fields in the clear, for
  filtering and reports; anything that identifies a child or is free text in
  ``sealed_*`` columns.
- ``register.sealing``: how those columns are encrypted (AES-256-GCM under the
  payload codec's key ring, bound to the row they belong to).
- ``register.store``: ``Register``, the one door: ``record`` (the workflow's
  writes, through the ``record_case`` activity), ``case`` and ``list_cases``
  (the API's reads), ``export``, the notice ledger and the used action links.
- ``register.listing``: the filters, sort orders and page tokens of a list.
- ``register.writers``: one writer at a time on a SQLite file, across the
  threads and processes (two workers, the API) that write it.
- ``register.migrate``: ``upgrade(url)``, run by ``make run`` and by the
  production setup's migration step; ``register/migrations`` holds the
  revisions.

One writer: only the workflow writes a case, through its activity, keyed by
the case reference and the event's sequence number, so a retried write or a
replay changes nothing twice. The API reads cases and writes none: it
writes only the ids of the emailed action links that have been used
(``use_action_link``), so each link works once.
"""

from register.store import Register, RegisterUnavailableError, SentEmail

__all__ = ["Register", "RegisterUnavailableError", "SentEmail"]
