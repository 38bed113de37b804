"""Kill a real process with SIGKILL once it has printed its Nth `progress` line.

The process runs with OTLAKE_TRACE=step: after each progress line (printed once a chunk or a partition is
committed) it waits for a line on its stdin, so the kill lands exactly after the Nth commit, however loaded
the machine is, and never after the run went on to its end.
"""

from __future__ import annotations

import signal
import subprocess


def kill_at_progress(cmd: list[str], env: dict, n: int) -> None:
    """Run cmd, SIGKILL it at its nth progress line on stderr, and check it died of that signal."""
    proc = subprocess.Popen(cmd, env={**env, "OTLAKE_TRACE": "step"}, stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = 0
    for line in proc.stderr:
        if line.startswith("progress"):
            seen += 1
            if seen == n:
                proc.send_signal(signal.SIGKILL)
                break
            try:
                proc.stdin.write("\n")  # go on to the next commit
                proc.stdin.flush()
            except BrokenPipeError:  # it ended: the assert below says so
                break
    proc.wait()
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"{cmd} ended with {proc.returncode} before progress line {n}"
