"""Files written whole or not at all: the one write-temp-then-rename of the project.

`atomic_path(path)` gives a temporary name beside `path` (same folder, so the rename is atomic
on one filesystem) to write to; the file takes `path`'s place only when the block ends without
an error, and the temporary file never outlives it. A reader, a kill or a full disk therefore
never meets a torn file. Temporary names are `.<name>.<pid>.<random>.tmp` (hidden, and unique,
so two writers never share one).
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield the temporary path to write; then rename it over `path` (`fsync`: flushed to disk
    first, for files a crash must not lose, like checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8", fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)
