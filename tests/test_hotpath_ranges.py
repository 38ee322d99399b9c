"""Range plans: merging neighbours under max_gap/max_block, scattering replies back."""

from __future__ import annotations

import numpy as np
import pytest

from tfjsfs.io.ranges import Block, Piece, Sink, plan_blocks


def dests(*sizes):
    buffers = [bytearray(n) for n in sizes]
    return buffers, [memoryview(b) for b in buffers]


def test_neighbours_merge_within_max_gap_only():
    _, (a, b, c, d) = dests(10, 10, 10, 10)
    blocks = plan_blocks(
        [("f", 0, 10, a), ("f", 15, 25, b), ("f", 100, 110, c), ("g", 0, 10, d)], max_gap=5
    )
    assert [(x.path, x.start, x.end, len(x.pieces)) for x in blocks] == [
        ("f", 0, 25, 2),
        ("f", 100, 110, 1),
        ("g", 0, 10, 1),
    ]
    assert blocks[0].wanted == 20 and blocks[0].nbytes == 25


def test_zero_gap_merges_touching_ranges_and_negative_never_merges():
    _, (a, b) = dests(10, 10)
    pieces = [("f", 0, 10, a), ("f", 10, 20, b)]
    assert len(plan_blocks(pieces, max_gap=0)) == 1
    assert len(plan_blocks(pieces, max_gap=-1)) == 2


def test_max_block_splits_long_runs():
    _, views = dests(*[10] * 6)
    pieces = [("f", 10 * i, 10 * i + 10, v) for i, v in enumerate(views)]
    blocks = plan_blocks(pieces, max_gap=0, max_block=25)
    assert [(b.start, b.end) for b in blocks] == [(0, 20), (20, 40), (40, 60)]


def test_unsorted_input_is_sorted_per_file_and_whole_files_are_marked():
    _, (a, b) = dests(5, 5)
    blocks = plan_blocks([("f", 5, 10, a), ("f", 0, 5, b)], max_gap=0, file_sizes={"f": 10})
    assert len(blocks) == 1 and blocks[0].whole
    assert [p.start for p in blocks[0].pieces] == [0, 5]


def test_merging_is_linear_in_the_number_of_ranges():
    """100,000 in-order ranges merge in one pass (a quadratic merge would take minutes)."""
    n = 100_000
    buf = memoryview(bytearray(n * 4))
    pieces = [("f", 8 * i, 8 * i + 4, buf[4 * i : 4 * i + 4]) for i in range(n)]
    blocks = plan_blocks(pieces, max_gap=4)
    assert len(blocks) == 1 and len(blocks[0].pieces) == n
    data = bytes(range(256)) * (8 * n // 256 + 1)
    Sink(blocks[0]).write(data[: blocks[0].nbytes])
    expected = b"".join(data[8 * i : 8 * i + 4] for i in range(n))
    assert bytes(buf) == expected


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1000])
def test_sink_scatters_any_chunking_and_skips_gaps(chunk):
    buffers, (a, b, c) = dests(4, 6, 3)
    block = Block("f", 2, 30, [Piece(2, 6, a), Piece(10, 16, b), Piece(27, 30, c)])
    data = bytes(range(2, 30))
    sink = Sink(block)
    for i in range(0, len(data), chunk):
        sink.write(data[i : i + chunk])
    assert sink.done
    assert bytes(buffers[0]) == bytes(range(2, 6))
    assert bytes(buffers[1]) == bytes(range(10, 16))
    assert bytes(buffers[2]) == bytes(range(27, 30))


def test_sink_reads_a_whole_file_when_the_server_ignored_the_range():
    buffers, (a,) = dests(5)
    block = Block("f", 10, 15, [Piece(10, 15, a)])
    sink = Sink(block)
    sink.reset(0)  # the body starts at byte 0 of the file
    data = bytes(range(40))
    for i in range(0, 40, 6):
        sink.write(data[i : i + 6])
    assert bytes(buffers[0]) == bytes(range(10, 15))


def test_sink_resumes_mid_block():
    target = np.zeros(100, np.uint8)
    block = Block("f", 0, 100, [Piece(0, 100, memoryview(target))])
    sink = Sink(block)
    sink.write(bytes(range(40)))
    sink.reset(0, 40)  # a second request continues at byte 40
    sink.write(bytes(range(40, 100)))
    assert target.tolist() == list(range(100))


def test_overlapping_and_duplicate_pieces_all_filled():
    buffers, (a, b, c) = dests(10, 4, 10)
    blocks = plan_blocks([("f", 0, 10, a), ("f", 3, 7, b), ("f", 0, 10, c)], max_gap=0)
    assert len(blocks) == 1
    Sink(blocks[0]).write(bytes(range(10)))
    assert bytes(buffers[0]) == bytes(range(10)) == bytes(buffers[2])
    assert bytes(buffers[1]) == bytes(range(3, 7))
