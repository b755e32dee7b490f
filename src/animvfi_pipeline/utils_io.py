"""Atomic file writing: write to a temporary name beside the target, then rename."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def temporary_path(target: str | Path) -> Path:
    target = Path(target)
    return target.with_name(f"{target.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it onto ``target``, on failure remove it.

    Works for files and directories. A reader never sees a half-written ``target``. An OSError
    while writing (a full disk, say) is raised again as one whose message starts with ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, re.escape(target.name) + r"\.(?:tmp|old)-(\d+)")
    tmp = temporary_path(target)
    _remove(tmp)
    try:
        yield tmp
    except OSError as exc:  # no space left, quota, read-only or vanished folder
        _remove(tmp)
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        kept = "the previous version is left as it was" if target.exists() else "nothing was written there"
        raise OSError(exc.errno, f"{target}: could not be written ({reason}); {kept}") from exc
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir() and target.exists():
        # os.replace cannot swap a directory over a non-empty one; move the old one aside first.
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(target, old)
        os.replace(tmp, target)
        _remove(old)
    else:
        os.replace(tmp, target)


def write_bytes_atomically(target: str | Path, data: bytes | memoryview) -> None:
    """``target`` holds ``data`` entirely, flushed to disk, or is left as it was."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())  # so that after a power cut the renamed file is not empty


def remove_stale_temporaries(folder: Path, pattern: str) -> list[Path]:
    """Remove the entries of ``folder`` whose whole name matches ``pattern`` (its group 1 is a
    pid) and whose writer is dead: what a run killed in mid-write (kill -9, power loss) left.

    A live writer's temporary is kept, so two processes writing one target never remove each
    other's work; so is a temporary whose pid a new, unrelated process has taken since (harmless).
    """
    removed = []
    if not folder.is_dir():
        return removed
    regex = re.compile(pattern)
    for entry in folder.iterdir():
        match = regex.fullmatch(entry.name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            log.warning("Removing %s, left by an interrupted run (pid %s)", entry, match.group(1))
            _remove(entry)
            removed.append(entry)
    return removed


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this machine (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
