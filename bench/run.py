"""`make bench`: every benchmark, results in bench-data/*.json (copy figures into BENCHMARKS.md).

`python -m bench.run NAME...` runs some. `lm_synth` (about an hour with the real local model) runs only
when named.
"""

from __future__ import annotations

import sys

from . import dataset, ingest, lm_serving, lm_synth, pairs, replay, timetravel, usermine


def main() -> None:
    which = set(sys.argv[1:]) or {"replay", "timetravel", "ingest", "pairs", "dataset", "usermine", "lm_serving"}
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
    if "lm_serving" in which:  # the local LM server: tokens/s, time to first token, requests/s
        lm_serving.main()
    if "lm_synth" in which:  # LM diffs from the local model through the verification chain
        lm_synth.main([])


if __name__ == "__main__":
    main()
