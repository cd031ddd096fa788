"""Processes: stopping a child server started in its own session (a uvicorn or Spark Connect
server), and telling whether a process that left files behind is still alive."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM the child's process group, SIGKILL it past ``timeout_s``; a group that already
    exited is fine. The child must have been started with ``start_new_session=True``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts: it may still own its files)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_detached_group(pid: int, timeout_s: float = 30) -> None:
    """``stop_process_group`` for a group whose leader is not our child (the process that
    started it has exited), or is: SIGTERM, SIGKILL past ``timeout_s``, reaped if it is ours."""

    def gone() -> bool:
        with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        return not pid_alive(pid)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if gone():
                return
            time.sleep(0.1)
