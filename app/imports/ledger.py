"""The watermark: block outcomes arrive in any order, are applied to the job strictly in block order.

`bytesRead` only passes a block once it and every block before it are fully accounted (written, or
counted as duplicate or invalid), so a checkpoint of (watermark, counters) is always consistent and a
resumed job restarts at a record boundary with counters that describe exactly the bytes before it.
"""

from __future__ import annotations

from app.imports.jobs import JobState
from app.imports.model import Outcome, Rejection

RECENT = 10


class Ledger:
    def __init__(self, state: JobState, *, max_rejects: int):
        self.state = state
        self.max_rejects = max_rejects
        self.next_index = 0
        self.pending: dict[int, Outcome] = {}
        self.unsaved: list[Rejection] = []

    def complete(self, outcome: Outcome) -> None:
        """Record a finished block; apply it and any queued successors that are now contiguous."""
        self.pending[outcome.block.index] = outcome
        while (ready := self.pending.pop(self.next_index, None)) is not None:
            self._apply(ready)
            self.next_index += 1

    def _apply(self, outcome: Outcome) -> None:
        state = self.state
        room = max(0, self.max_rejects - state.rows_invalid)
        self.unsaved.extend(outcome.rejections[:room])
        block = outcome.block
        if block.file_end is None:
            state.bytes_read = block.end
        else:  # a streamed file: the watermark is in the decoded stream, bytes_read the file read for it
            state.bytes_read, state.stream_offset = block.file_end, block.end
        state.lines_read += outcome.block.lines
        state.rows_inserted += outcome.inserted
        state.rows_duplicate += outcome.duplicate
        state.rows_updated += outcome.updated
        state.rows_unchanged += outcome.unchanged
        state.rows_protected += outcome.protected
        state.rows_invalid += outcome.invalid
        state.rows_processed += (
            outcome.inserted
            + outcome.duplicate
            + outcome.updated
            + outcome.unchanged
            + outcome.protected
            + outcome.invalid
        )
        if outcome.recent:
            state.recent_customers = (outcome.recent[::-1] + state.recent_customers)[:RECENT]

    def take_rejections(self) -> list[Rejection]:
        """Rejections of applied blocks not yet stored; store them before the checkpoint that covers them."""
        taken, self.unsaved = self.unsaved, []
        return taken
