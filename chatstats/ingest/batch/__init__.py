"""One unit of ingest: rows read from chat.db turned into app-database rows.

The historical import and the live tail share it, so both decode, attribute, react and
group exactly alike. It runs inside the caller's write transaction and touches nothing
outside it; the caller commits the rows together with the source's new watermarks.

The package splits the writer along its seams: `base` (state and reference data),
`messages`, `edits`, `attachments`, `grouping` (conversations), `totals` and `outcome`;
`Ingest` (`ingest.py`) puts them together.
"""

from chatstats.ingest.batch.edits import edit_state
from chatstats.ingest.batch.ingest import Ingest
from chatstats.ingest.batch.outcome import Counters, Outcome
from chatstats.ingest.batch.totals import refresh_chats, refresh_contacts

__all__ = ["Counters", "Ingest", "Outcome", "edit_state", "refresh_chats", "refresh_contacts"]
