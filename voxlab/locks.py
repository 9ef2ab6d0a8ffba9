"""Folder locks: one process at a time writes a run folder or a latent-cache folder.

A lock is a file (`<folder>/.lock` unless told otherwise), held with `flock` (the kernel releases it when the holder dies, even
after SIGKILL) and holding the holder's pid, host and command for the message a second process
prints. The holder deletes the file when it lets go; a file left by a killed process is a stale
lock (nobody holds its flock) and is taken over with a note. The folder itself is flocked too: a
lock belongs to the folder (its device and inode), whatever path, symlink or mount reached it.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class FolderLocked(RuntimeError):
    """Another live process holds the folder's lock."""


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def describe_holder(info: dict) -> str:
    if not info:
        return "another process (no details recorded)"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: {info.get('command')}"


class FolderLock:
    """`with FolderLock(folder, what="run folder"):` ... Raises FolderLocked naming the holder, or
    with `wait=True` says whom it waits for and blocks until the holder lets go."""

    def __init__(self, folder: str | Path, what: str = "folder", wait: bool = False, lock_file: Path | None = None):
        self.folder, self.path = Path(folder), Path(lock_file or Path(folder) / ".lock")
        self.what, self.wait = what, wait
        self.fd: int | None = None
        self.folder_fd: int | None = None

    def _lock_folder(self) -> None:
        """flock the folder itself (it is one inode, however it is named); the holder's details
        are in the lock file."""
        try:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return
        self._flock(fd, self._file_holder)
        self.folder_fd = fd

    def _file_holder(self) -> str:
        try:
            with open(self.path, "rb") as f:
                return describe_holder(_holder(f.fileno()))
        except OSError:
            return describe_holder({})

    def _flock(self, fd: int, holder) -> None:
        """An exclusive flock on `fd`: at once, or after waiting (`wait`), else FolderLocked naming
        `holder()`; `fd` is closed when refused."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        who = holder()
        if not self.wait:
            os.close(fd)
            raise FolderLocked(f"{self.folder}: this {self.what} is in use by {who}; "
                               f"wait for it to finish (or stop it) and try again")
        print(f"[lock] waiting for {who}, which holds {self.folder}", file=sys.stderr)
        fcntl.flock(fd, fcntl.LOCK_EX)

    def acquire(self) -> "FolderLock":
        self._lock_folder()
        try:
            return self._acquire_file()
        except BaseException:
            self._unlock_folder()
            raise

    def _unlock_folder(self) -> None:
        if self.folder_fd is not None:
            os.close(self.folder_fd)
            self.folder_fd = None

    def _acquire_file(self) -> "FolderLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._flock(fd, lambda: describe_holder(_holder(fd)))
            try:  # the holder may have deleted the file as it let go: lock the file that is there now
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _holder(fd)
        if stale:
            print(f"[lock] taking over a stale lock on {self.folder} left by {describe_holder(stale)} "
                  "(that process is gone)", file=sys.stderr)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: a waiter then re-checks and takes the new file
        os.close(self.fd)
        self.fd = None
        self._unlock_folder()

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
