"""The watermark: block outcomes arrive in any order, are applied to the job strictly in block order.

`bytesRead` only passes a block once it and every block before it are fully accounted (written, or
counted as duplicate or invalid), so a checkpoint of (watermark, counters) is always consistent and a
resumed job restarts at a record boundary with counters that describe exactly the bytes before it.

What is shown live moves faster than the watermark: `overlay()` adds the batches already written by blocks
that are still being written (or wait for an earlier block). It is never persisted, so it can be dropped at
any time: a block that does not finish (cancel, shutdown, crash) is re-read and counted again on resume.
"""

from __future__ import annotations

from app.imports.job.jobs import JobState
from app.imports.model import Counters, Outcome, Rejection, Written

RECENT = 10


class Ledger:
    def __init__(self, state: JobState, *, max_rejects: int):
        self.state = state
        self.max_rejects = max_rejects
        self.next_index = 0
        self.pending: dict[int, Outcome] = {}  # finished blocks waiting for an earlier one
        self.open: dict[int, Outcome] = {}  # blocks being written: their outcome grows batch by batch
        self.unsaved: list[Rejection] = []
        self.displaced: set[int] = set()  # lines displaced before their insert was counted (see `displace`)
        self.chains: dict[int, int] = {}  # line -> later: displacing the line displaces `later` (see `chain`)

    def begin(self, outcome: Outcome) -> None:
        self.open[outcome.block.index] = outcome

    def abandon(self, index: int) -> None:
        """A block that will not finish (the run stops): it is not accounted, and not shown any more."""
        self.open.pop(index, None)

    def complete(self, outcome: Outcome) -> None:
        """Record a finished block; apply it and any queued successors that are now contiguous."""
        self.open.pop(outcome.block.index, None)
        self.pending[outcome.block.index] = outcome
        while (ready := self.pending.pop(self.next_index, None)) is not None:
            self._apply(ready)
            self.next_index += 1

    def record(self, outcome: Outcome, lines: list[int], written: Written, *, first_row: bool) -> None:
        """A batch of the block `outcome` came back from the sink (`lines`: its rows' lines). `first_row`
        (insert mode, not a dry run): keep the bookkeeping of the rule that the first row of an id wins."""
        outcome.counts.add(written)
        if not first_row:
            return
        self.inserted(outcome, [line for i, line in enumerate(lines) if i not in written.skipped])
        for line in written.displaced:
            self.displace(line)
        for line, later in written.chained:
            self.chain(line, later)

    def inserted(self, outcome: Outcome, lines: list[int]) -> None:
        """Rows of a batch counted inserted (insert mode); one already displaced counts as a duplicate."""
        for line in lines:
            if line in self.displaced:
                self.displaced.discard(line)
                _to_duplicate(outcome)
            else:
                outcome.inserted_lines.add(line)

    def displace(self, line: int) -> None:
        """An earlier row of the same id replaced the customer this job's row at `line` had inserted: that row
        is a duplicate. Its block is not applied yet (it comes after the earlier row's), or its insert is not
        counted yet (then `inserted` finds it here); a row of a block not run yet in this attempt finds the
        earlier row stored and counts itself a duplicate."""
        for outcome in (*self.open.values(), *self.pending.values()):
            if line in outcome.inserted_lines:
                outcome.inserted_lines.discard(line)
                _to_duplicate(outcome)
                return
        if line in self.chains:  # a duplicate already, whose lost replace had displaced `later`
            self.displace(self.chains.pop(line))
        else:
            self.displaced.add(line)

    def chain(self, line: int, later: int) -> None:
        """Row `line` (a duplicate) may have replaced row `later` before an earlier row replaced it in turn;
        then that earlier row displaced `line`, not `later`, and `later` must be displaced here."""
        if line in self.displaced:
            self.displaced.discard(line)
            self.displace(later)
        else:
            self.chains[line] = later

    def overlay(self) -> Counters:
        """Rows written or rejected by blocks not yet applied."""
        total = Counters()
        for outcome in (*self.open.values(), *self.pending.values()):
            total.add(outcome.counts)
        return total

    def _apply(self, outcome: Outcome) -> None:
        state = self.state
        room = max(0, self.max_rejects - state.rows_invalid)
        self.unsaved.extend(outcome.rejections[:room])
        block = outcome.block
        if block.file_end is None:
            state.bytes_read = block.end
        else:  # a streamed file: the watermark is in the decoded stream, bytes_read the file read for it
            state.bytes_read, state.stream_offset = block.file_end, block.end
        state.lines_read += block.lines
        self.displaced = {line for line in self.displaced if line > state.lines_read}  # none below can match
        self.chains = {line: later for line, later in self.chains.items() if line > state.lines_read}
        state.add(outcome.counts)
        if outcome.recent:
            state.recent_customers = (outcome.recent[::-1] + state.recent_customers)[:RECENT]

    def take_rejections(self) -> list[Rejection]:
        """Rejections of applied blocks not yet stored; store them before the checkpoint that covers them."""
        taken, self.unsaved = self.unsaved, []
        return taken


def _to_duplicate(outcome: Outcome) -> None:
    outcome.counts.rows_inserted -= 1
    outcome.counts.rows_duplicate += 1
