"""`make bench`: every benchmark, results in bench-data/*.json (copy figures into BENCHMARKS.md)."""

from __future__ import annotations

import sys

from . import dataset, ingest, pairs, replay, timetravel, usermine


def main() -> None:
    which = set(sys.argv[1:]) or {"replay", "timetravel", "ingest", "pairs", "dataset", "usermine"}
    if "replay" in which:
        replay.main()
    if "timetravel" in which:
        timetravel.main()
    if "ingest" in which:
        ingest.main()
    if "pairs" in which:  # and the synth verification chain on the same warehouse
        pairs.main()
    if "dataset" in which:
        dataset.main()
    if "usermine" in which:  # user-fix mining on DebugBench repls with several bugs, and on the demo's
        usermine.main()


if __name__ == "__main__":
    main()
