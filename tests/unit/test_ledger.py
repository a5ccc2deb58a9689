"""app/imports/job/ledger.py: outcomes arrive in any order and are applied to the job strictly in block order."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.imports.job.jobs import JobState
from app.imports.job.ledger import Ledger
from app.imports.model import Block, Counters, Outcome, Rejection, Status

HEADER_END = 40  # the watermark of a new job: data starts after the header


def new_state(**changes: Any) -> JobState:
    return JobState(
        job_id="job-1",
        status=Status.RUNNING,
        file_path="/imports/customers.csv",
        file_size=10_000,
        file_identity={"size": 10_000},
        mode="insert",
        batch_size=100,
        bytes_read=HEADER_END,
        lines_read=1,
        **changes,
    )


def make_blocks(sizes: list[int]) -> list[Block]:
    """Contiguous blocks after the header, `size` bytes and size // 10 lines each."""
    blocks, start, line = [], HEADER_END, 2
    for index, size in enumerate(sizes):
        blocks.append(Block(index, start, start + size, line, size // 10, b""))
        start, line = start + size, line + size // 10
    return blocks


def outcome(
    block: Block, *, inserted: int = 0, duplicate: int = 0, rejected: int = 0, recent: list[str] | None = None
) -> Outcome:
    """Rejections on the block's first lines, as a parser reports them."""
    rejections = [Rejection(block.first_line + i, "customer id is empty", f",row {i}") for i in range(rejected)]
    counts = Counters(rows_inserted=inserted, rows_duplicate=duplicate, rows_invalid=rejected)
    return Outcome(block, counts, rejections=rejections, recent=recent or [])


def watermark(blocks: list[Block], done: set[int]) -> int:
    """The end of the longest prefix of blocks that are all completed."""
    end = HEADER_END
    for block in blocks:
        if block.index not in done:
            break
        end = block.end
    return end


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 0, 3, 1], [1, 2, 3, 0]])
def test_the_watermark_only_passes_a_contiguous_prefix(order: list[int]) -> None:
    blocks = make_blocks([100, 250, 30, 120])
    ledger = Ledger(new_state(), max_rejects=10)
    done: set[int] = set()
    for index in order:
        ledger.complete(outcome(blocks[index], inserted=1))
        done.add(index)
        assert ledger.state.bytes_read == watermark(blocks, done)
        applied = sum(1 for block in blocks if block.end <= ledger.state.bytes_read)
        assert ledger.state.rows_inserted == applied
        assert ledger.state.lines_read == 1 + sum(block.lines for block in blocks[:applied])
        assert len(ledger.pending) == len(done) - applied
    assert ledger.state.bytes_read == blocks[-1].end


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0]])
def test_counters_sum_to_rows_processed(order: list[int]) -> None:
    blocks = make_blocks([100, 100, 100])
    outcomes = [
        outcome(blocks[0], inserted=5, duplicate=2, rejected=1),
        outcome(blocks[1], inserted=0, duplicate=7, rejected=0),
        outcome(blocks[2], inserted=9, duplicate=0, rejected=3),
    ]
    state = new_state(rows_processed=10, rows_inserted=6, rows_duplicate=3, rows_invalid=1)  # a resumed job
    ledger = Ledger(state, max_rejects=100)
    for index in order:
        ledger.complete(outcomes[index])
        assert state.rows_processed == state.rows_inserted + state.rows_duplicate + state.rows_invalid
    assert (state.rows_processed, state.rows_inserted, state.rows_duplicate, state.rows_invalid) == (37, 20, 12, 5)


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 3, 0, 1]])
@pytest.mark.parametrize(
    ("max_rejects", "already_invalid", "expected"),
    [
        (0, 0, 0),
        (1, 0, 1),
        (4, 0, 4),
        (5, 0, 5),
        (6, 0, 6),
        (100, 0, 9),
        (5, 3, 2),  # a resumed job has already stored 3
        (5, 7, 0),
    ],
)
def test_only_the_first_max_rejects_rejections_are_handed_out_in_line_order(
    order: list[int], max_rejects: int, already_invalid: int, expected: int
) -> None:
    blocks = make_blocks([100, 100, 100, 100])
    outcomes = [outcome(block, rejected=n) for block, n in zip(blocks, [2, 0, 3, 4], strict=True)]
    ledger = Ledger(new_state(rows_invalid=already_invalid, rows_processed=already_invalid), max_rejects=max_rejects)
    taken: list[Rejection] = []
    for index in order:
        ledger.complete(outcomes[index])
        taken += ledger.take_rejections()
        assert ledger.take_rejections() == []
    every = [rejection for item in outcomes for rejection in item.rejections]
    assert taken == every[:expected]
    assert [rejection.line for rejection in taken] == sorted(rejection.line for rejection in taken)
    assert ledger.state.rows_invalid == already_invalid + 9


def test_rejections_of_blocks_not_yet_applied_are_not_handed_out() -> None:
    blocks = make_blocks([100, 100])
    ledger = Ledger(new_state(), max_rejects=10)
    ledger.complete(outcome(blocks[1], rejected=2))
    assert ledger.take_rejections() == []
    ledger.complete(outcome(blocks[0], rejected=1))
    assert [rejection.line for rejection in ledger.take_rejections()] == [
        blocks[0].first_line,
        blocks[1].first_line,
        blocks[1].first_line + 1,
    ]


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 0, 2]])
def test_recent_customers_are_newest_first_and_at_most_ten(order: list[int]) -> None:
    blocks = make_blocks([100, 100, 100])
    recents = [["a1", "a2", "a3", "a4"], ["b1", "b2", "b3"], ["c1", "c2", "c3", "c4", "c5"]]
    ledger = Ledger(new_state(recent_customers=["old2", "old1"]), max_rejects=10)
    for index in order:
        ledger.complete(outcome(blocks[index], inserted=len(recents[index]), recent=recents[index]))
    assert ledger.state.recent_customers == ["c5", "c4", "c3", "c2", "c1", "b3", "b2", "b1", "a4", "a3"]


def test_a_block_with_nothing_written_keeps_recent_customers() -> None:
    blocks = make_blocks([100, 100])
    ledger = Ledger(new_state(), max_rejects=10)
    ledger.complete(outcome(blocks[0], inserted=2, recent=["x", "y"]))
    ledger.complete(outcome(blocks[1], duplicate=3))
    assert ledger.state.recent_customers == ["y", "x"]


# ---- property: completion order does not matter ------------------------------------------------------


@st.composite
def completions(draw: st.DrawFn) -> tuple[list[Outcome], list[int]]:
    sizes = draw(st.lists(st.integers(1, 500), min_size=1, max_size=12))
    outcomes = []
    for number, block in enumerate(make_blocks(sizes)):
        counts = st.integers(0, 5)
        recent = [f"b{number}-{i}" for i in range(draw(counts))]
        outcomes.append(
            outcome(block, inserted=len(recent), duplicate=draw(counts), rejected=draw(counts), recent=recent)
        )
    return outcomes, draw(st.permutations(range(len(outcomes))))


def run(outcomes: list[Outcome], order: list[int], max_rejects: int) -> tuple[JobState, list[Rejection]]:
    ledger = Ledger(new_state(), max_rejects=max_rejects)
    blocks = [item.block for item in outcomes]
    taken: list[Rejection] = []
    done: set[int] = set()
    for index in order:
        ledger.complete(outcomes[index])
        done.add(index)
        assert ledger.state.bytes_read == watermark(blocks, done)
        taken += ledger.take_rejections()
    return ledger.state, taken


@settings(max_examples=200, deadline=None)
@given(case=completions(), max_rejects=st.integers(0, 30))
def test_any_completion_order_gives_the_in_order_result(
    case: tuple[list[Outcome], list[int]], max_rejects: int
) -> None:
    outcomes, order = case
    state, taken = run(outcomes, order, max_rejects)
    expected_state, expected_taken = run(outcomes, sorted(order), max_rejects)
    assert state.progress_fields() == expected_state.progress_fields()
    assert taken == expected_taken
    assert state.bytes_read == outcomes[-1].block.end
    assert state.rows_processed == state.rows_inserted + state.rows_duplicate + state.rows_invalid
    every = [rejection for item in outcomes for rejection in item.rejections]
    assert taken == every[:max_rejects]
    written = [customer for item in outcomes for customer in item.recent]
    assert state.recent_customers == written[::-1][:10]


def test_a_displaced_row_counts_as_a_duplicate_before_or_after_its_insert_is_counted() -> None:
    ledger = Ledger(new_state(), max_rejects=10)
    blocks = [Outcome(Block(index, 0, 1, 10 * index + 2, 10, b"")) for index in range(2)]
    for outcome in blocks:
        ledger.begin(outcome)
        outcome.counts.rows_inserted = 3
    ledger.inserted(blocks[1], [12, 13, 14])
    ledger.displace(13)  # after its insert was counted
    ledger.displace(5)  # before: a row of block 0 whose batch has not come back yet
    ledger.inserted(blocks[0], [4, 5, 6])
    assert [(o.counts.rows_inserted, o.counts.rows_duplicate) for o in blocks] == [(2, 1), (2, 1)]
    assert ledger.displaced == set()
