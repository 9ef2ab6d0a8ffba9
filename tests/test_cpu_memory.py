"""models.cpu_memory: after keep_large_blocks(), a large tensor comes from glibc's heap, not a fresh mmap."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import ctypes, torch
from models.cpu_memory import keep_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def mmapped_growth():  # bytes glibc mmapped for one 64 MB tensor
    before = libc.mallinfo2().hblkhd
    t = torch.empty(64 << 20, dtype=torch.uint8)
    return libc.mallinfo2().hblkhd - before

default = mmapped_growth()
applied = keep_large_blocks()
print(default, applied, mmapped_growth())
"""


def _has_mallinfo2() -> bool:
    try:
        import ctypes
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="needs glibc 2.33+")
def test_large_tensors_reuse_the_heap_once_kept():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    default, applied, kept = out.stdout.split()
    assert int(default) >= 64 << 20  # glibc's default: a fresh mapping per large block
    assert applied == "True"
    assert int(kept) == 0  # served from the heap
