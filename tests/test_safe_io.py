"""voxlab.safe_io: a file is replaced only by a complete new one; a failed write leaves the old
file as it was and no temporary file behind."""
import pytest

from voxlab.safe_io import atomic_path, write_text_atomic


def test_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text_atomic(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the sec")
            raise RuntimeError("disk full")
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]
    with atomic_path(target, fsync=True) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.txt.") and tmp.name.endswith(".tmp")
        tmp.write_text("second")
    assert target.read_text() == "second" and len(list(target.parent.iterdir())) == 1
