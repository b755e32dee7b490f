"""One run at a time in a project: an exclusive lock on a small file that names its holder.

Two `kedro run`s (or a `dvc repro`, whose stages call `kedro run`) in the same clone would write
the same store and checkpoints at once. The second one is refused at once, with the pid, command
and start time of the first. Clones do not block each other: each has its own lock file.

Why ``fcntl.flock`` and not a pid file or the ``filelock`` package: the kernel drops a flock when
its process dies, however it dies (kill -9 included), so a lock left by a dead run is never in
the way and there is no pid-reuse guesswork; and ``filelock`` truncates the file when it *tries*
to lock, which would erase the holder's description before we can show it. The file itself is
never deleted (deleting a flocked file lets two processes lock two different files); an empty
file means "free". Local file systems only (flock over NFS is not reliable).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class RunLockedError(RuntimeError):
    """Another run holds the project's lock. The message starts with the lock file's path."""

    def __init__(self, path: str | Path, holder: dict[str, Any]):
        self.path = str(path)
        self.holder = holder
        super().__init__(f"{self.path}: another run is in progress in this project: {describe(holder)}. "
                         "Wait for it to finish or stop it; a separate clone of the project can run side by side.")


def describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that has not written its name yet"
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (`{holder.get('command', '?')}`, started {when})"


class RunLock:
    """``acquire()`` or RunLockedError; ``release()`` when the run ends. Also a context manager."""

    def __init__(self, path: str | Path, command: str | None = None):
        self.path = Path(path)
        self.command = command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise RunLockedError(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        previous = _read(fd)
        if previous:  # only a run that did not get to release() leaves its name behind
            log.warning("%s: the previous run (%s) ended without releasing the lock (killed?); taking it over",
                        self.path, describe(previous))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return {}
    try:
        holder = json.loads(raw)
    except ValueError:
        return {"command": raw[:200].decode(errors="replace")}
    return holder if isinstance(holder, dict) else {}
