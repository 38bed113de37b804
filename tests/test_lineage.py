"""ot_replay.lineage: the compiled replay of a lineage's stored packets against the Python reference.

The packets come from the compiled ingest fold itself (random streams of inserts, deletes and skips with
unicode outside the BMP, CRLF, controls, empty files, moves and removals), and with a checkpoint at every
version the fold also says what each version's text is, so both implementations are checked against it.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
from collections import defaultdict

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ot_replay import _fold, lineage
from ot_replay.fold_native import fold_rows
from ot_replay.lineage import DamagedPacket, texts
from tests.test_fold_native import DEFAULT, TINY, _stream, repl_spec, rows_table

CHUNKS = (TINY, 32, DEFAULT)


def lineages(specs) -> tuple[dict, dict]:
    """{(repl, file_id): packets in version order} and {(repl, file_id, version): text} of the fold's rows."""
    records, _ = _stream(specs)
    tables, _ = fold_rows(rows_table(records), 1)  # no resume: every lineage starts empty
    ops = tables["ot_ops"].sort_by([("repl_id", "ascending"), ("file_id", "ascending"), ("version", "ascending")])
    packets = defaultdict(list)
    for r, f, v, o in zip(*(ops.column(c).to_pylist() for c in ("repl_id", "file_id", "version", "ops")),
                          strict=True):
        assert v == len(packets[(r, f)]) + 1  # versions of a lineage run 1, 2, ...
        packets[(r, f)].append(o)
    cps = tables["checkpoints"]
    truth = dict(zip(zip(*(cps.column(c).to_pylist() for c in ("repl_id", "file_id", "version")), strict=True),
                     cps.column("content").to_pylist(), strict=True))
    return packets, truth


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(specs=st.lists(repl_spec, min_size=1, max_size=3), chunk=st.sampled_from(CHUNKS), data=st.data())
def test_random_lineages_replay_to_the_folds_checkpoints(specs, chunk, data):
    packets, truth = lineages(specs)
    for (r, f), ops in packets.items():
        wanted = data.draw(st.lists(st.integers(0, len(ops)), max_size=8))
        native = texts("", ops, wanted, chunk_bytes=chunk)
        assert native == texts("", ops, wanted, native=False)
        assert native == ["" if n == 0 else truth[(r, f, n)] for n in wanted]
        if len(ops) > 1:  # from a checkpoint on, as time travel replays
            base = truth[(r, f, 1)]
            assert texts(base, ops[1:], [len(ops) - 1], chunk_bytes=chunk) == [truth[(r, f, len(ops))]]


ODD_STORED = [  # op lists another writer (a Spark job, a hand repair) may have stored: same meaning
    ('[ 3 , "x" ]', [3, "x"]), ('[3,"\\u0041\\u00e9\\ud83d\\ude00"]', [3, "Aé😀"]), ('[3,"a\\/b"]', [3, "a/b"]),
    ('[-2,"\\r\\n\\t\\b\\f\\u0000"]', [-2, "\r\n\t\b\f\x00"]), ("[]", []), ('[0,""]', []),
    ("[999999999999999]", None), ('["\\"\\\\"]', ['"\\']),
]


@pytest.mark.parametrize(("stored", "ops"), ODD_STORED)
@pytest.mark.parametrize("chunk", [TINY, DEFAULT])
def test_stored_forms_other_than_orjsons_read_the_same(stored, ops, chunk):
    base = "abcdé"
    if ops is None:  # a skip far past the end
        with pytest.raises(DamagedPacket):
            texts(base, [stored], [1], chunk_bytes=chunk)
        with pytest.raises(DamagedPacket):
            texts(base, [stored], [1], native=False)
        return
    expected = texts(base, [orjson.dumps(ops).decode()], [1], native=False)
    assert texts(base, [stored], [1], chunk_bytes=chunk) == expected
    assert texts(base, [stored], [1], native=False) == expected


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("bad", ["[9]", "[2,-9]", '[1,"x",{}]', "nope", '"ops"', "[1.5]", None, "[true]"])
def test_damaged_packets_raise_naming_the_packet(native, bad):
    good = ['["ab"]', "[1,-1]"]
    with pytest.raises(DamagedPacket, match="^packet 2[: ]"):
        texts("", [*good, bad], [3], native=native)
    assert texts("", [*good, bad], [2, 0], native=native) == ["a", ""]  # the packets before it are fine


def test_counts_in_any_order_with_repeats_and_arrow_inputs():
    ops = ['["hello"]', '[5," world"]', "[-1]", "[4,-6]"]
    want = ["hello", "hello world", "ello world", "ello"]
    assert texts("", ops, [4, 1, 4, 0, 2]) == [want[3], want[0], want[3], "", want[1]]
    sliced = pa.array(["junk", *ops], pa.large_string()).slice(1)
    chunked = pa.chunked_array([ops[:2], ops[2:]], pa.string())
    for packets in (sliced, chunked, pa.array(ops)):
        assert texts("", packets, [3, 2]) == [want[2], want[1]]
    assert texts("", ops, [np.int64(2), np.int32(1)]) == texts("", ops, [2, 1], native=False) == [want[1], want[0]]
    for wrong in ([5], [-1], [1.5]):  # not a count of these packets: an error of the call, not of the store
        with pytest.raises((ValueError, TypeError)) as raised:
            texts("", ops, wrong)
        assert not isinstance(raised.value, DamagedPacket)
    with pytest.raises(ValueError, match="chunk_bytes") as raised:
        texts("", ops, [1], chunk_bytes=8)
    assert not isinstance(raised.value, DamagedPacket)


def test_a_long_lineage_across_many_chunks_and_back_to_empty():
    ops = [orjson.dumps([n * 3, f"{n}😀é\r\n"]).decode() for n in range(400)]
    ops.append(orjson.dumps([-len(texts("", ops, [400])[0])]).decode())
    for chunk in CHUNKS:
        got = texts("", ops, [0, 7, 200, 400, 401], chunk_bytes=chunk)
        assert got == texts("", ops, [0, 7, 200, 400, 401], native=False)
        assert got[-1] == ""


def test_out_of_memory_at_every_allocation_raises_memory_error():
    ops = [orjson.dumps([n, "é" * (n % 7), -1 if n else 0]).decode() for n in range(60)] + ['[ 2 , "\\u0041" ]']
    expected = texts("x" * 50, ops, [0, 30, 61], native=False)
    failures = 0
    try:
        for n in range(1, 100_000):
            _fold._fail_after(n)
            try:
                got = texts("x" * 50, ops, [0, 30, 61], chunk_bytes=TINY)
            except MemoryError:
                failures += 1
                continue
            if _fold._fail_pending():
                break
            pytest.fail(f"allocation {n} failed without an error")
    finally:
        _fold._fail_after(0)
    assert failures > 20
    assert got == expected


def test_no_reference_leaks():
    # packets read in C, one left to Python (spaces), and a damaged one; results checked by tracemalloc too,
    # since strings are not tracked by the garbage collector
    ops = pa.array(['["ab"]', '[1,"\\u0041"]', '[ 2 , -1 ]', '[1, "é😀"]'])
    base = "".join(["st", "art ", "é"])  # made at run time: not an interned constant others hold
    watched = [base, ops, lineage.parse_compact]

    def run():
        got = texts(base, ops, [0, 1, 2, 3, 4, 4])
        try:
            texts(base, ['[1,"x",{}]'], [1])
        except DamagedPacket:
            pass
        return got

    run()
    gc.collect()
    before = [sys.getrefcount(o) for o in watched]
    objects = len(gc.get_objects())
    tracemalloc.start()
    try:
        for _ in range(50):
            run()
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        for _ in range(500):
            run()
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert second - first < 20_000  # 500 runs make ~3,000 strings: a leaked one each would be ~200 KB
    assert [sys.getrefcount(o) for o in watched] == before
    assert len(gc.get_objects()) - objects < 50


def test_parse_compact_accepts_only_a_list_of_ints_and_strings():
    assert lineage.parse_compact(json.dumps([1, "x", -2])) == [1, "x", -2]
    for bad in ("{}", "[null]", "[[1]]", "x"):
        with pytest.raises(DamagedPacket):
            lineage.parse_compact(bad)
