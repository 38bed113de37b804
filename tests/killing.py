"""Kill a real process with SIGKILL once it has printed its Nth `progress` line (OTLAKE_TRACE=1)."""

from __future__ import annotations

import signal
import subprocess


def kill_at_progress(cmd: list[str], env: dict, n: int) -> None:
    """Run cmd, SIGKILL it at its nth progress line on stderr, and check it died of that signal."""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = 0
    for line in proc.stderr:
        if line.startswith("progress"):
            seen += 1
            if seen == n:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"{cmd} ended with {proc.returncode} before progress line {n}"
