"""One writer per output: `output_lock(target)` holds an exclusive lock on `<target>.lock` while a command writes
`target` (a file or a folder), and names its holder to any other process that wants it.

The lock is a `flock` on the lock file, which holds the holder's process id, host, command and start time. A second
writer is refused (`OutputLockedError`, naming the holder) or, with `wait=True`, waits for it. The kernel drops a flock
when its process dies, however it dies (kill -9 included), so the lock of a dead process is free at once and the next
writer takes it over; no guess from process ids is needed (they are reused, and mean nothing on another host that
shares the folder). The holder removes the lock file when it is done; a waiter that locked the removed file notices
and locks the new one.

Why not the `filelock` package (a huggingface_hub dependency): across the versions huggingface_hub accepts, its Unix
lock truncates the lock file when it opens it and keeps it after release, so the file cannot tell who holds the lock,
and there is no portable way to ask it. Why not an O_EXCL file with a PID: a dead holder can only be guessed from its
process id. flock needs a POSIX system (Linux, macOS), which this package's tagging and training already assume.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# The standard library's logging (warnings reach stderr without any set-up): this module needs nothing else, so a
# process can hold a lock without importing torch.
logger = logging.getLogger(__name__)

__all__ = ["OutputLockedError", "lock_path", "output_lock"]

# How long a refused process waits for the holder to write its name into a lock it has just taken.
_NAME_WAIT_S = 1.0
_WAIT_HINT = "pass --wait_for_lock (wait_for_lock=True) to start when it does"


class OutputLockedError(BlockingIOError):
    """Another process holds the lock of an output (an OSError, so the commands report it as `error: ...`)."""


def lock_path(target: str | os.PathLike) -> Path:
    """`<target>.lock` beside `target`, its folder resolved so that two spellings of one output share one lock."""
    target = Path(os.path.abspath(target))
    return Path(os.path.realpath(target.parent)) / f"{target.name}.lock"


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, *, wait: bool = False, hint: str = _WAIT_HINT) -> Iterator[Path]:
    """Hold the lock of `target` for the `with` block; yields the lock file's path.

    Raises:
        OutputLockedError: another process holds it and `wait` is false; the message names that process and ends
            with `hint` (what else the user can do).
    """
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)  # the lock must exist before anything is written there
    descriptor = _acquire(path, target, wait, hint)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still locked: a waiter then sees its file was removed and starts over
        os.close(descriptor)


def _acquire(path: Path, target: str | os.PathLike, wait: bool, hint: str) -> int:
    """A descriptor of `path` holding its lock, with this process's name written into it."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(descriptor):
                holder = _holder_of(descriptor)
                if not wait:
                    raise OutputLockedError(
                        f"{target} is being written by {holder}; wait for it to finish, or {hint} (lock file {path})"
                    )
                logger.warning(f"waiting for {holder} to finish writing {target}")
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            if _still_linked(descriptor, path):
                _take(descriptor, path)
                return descriptor
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)  # the holder removed the file while this process waited: lock the next one


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _still_linked(descriptor: int, path: Path) -> bool:
    """Whether `path` is still the file `descriptor` locked (its holder unlinks it on release)."""
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


def _take(descriptor: int, path: Path) -> None:
    """Write this process's name into the lock; a name already there is a holder that died without releasing."""
    stale = os.pread(descriptor, 4096, 0)
    if stale.strip():
        holder = _describe(stale) or "a process that did not name itself"
        logger.warning(f"taking over {path} from {holder}, which is no longer running")
    record = {
        "pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.orig_argv),
        "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(record).encode(), 0)


def _holder_of(descriptor: int) -> str:
    """The holder named in the lock file; it writes its name just after locking, so until then it is read again."""
    deadline = time.monotonic() + _NAME_WAIT_S
    while (holder := _describe(os.pread(descriptor, 4096, 0))) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return holder or "another process (it has not written its name into the lock file)"


def _describe(content: bytes) -> str | None:
    try:
        record = json.loads(content)
        return f"process {record['pid']} on {record['host']} (since {record['since']}: {record['command']})"
    except (ValueError, KeyError, TypeError):
        return None
