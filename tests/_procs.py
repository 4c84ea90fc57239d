"""Test helper: start a command, wait until it is ready, send it a signal, collect its output."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def signal_when_ready(
    cmd: list[str], env: dict, ready: Callable[[], bool], signum: int, timeout: float = 120
) -> tuple[int, str]:
    """Run `cmd`; once ready() is true send `signum`; returns (exit code, stderr). Fails if the command ends
    or `timeout` seconds pass before it is ready."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + timeout
        while not ready():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, f"{cmd} was not ready within {timeout} s"
            time.sleep(0.1)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err
