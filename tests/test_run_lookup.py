"""voxlab.runs: the one run lookup (newest run of an experiment at a scale, with given overrides,
finished or not) and checkpoint -> run folder, as `vae.path=auto`, the demo and sweeps use them."""
from pathlib import Path

from voxlab.runs import find_run, run_of_checkpoint, write_status


def _run(root: Path, version: int, scale: str, overrides: list[str], state: str | None, last: bool = True) -> Path:
    run = root / "audiovae" / f"version_{version}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"experiment: audiovae\nscale: {scale}\noverrides: {overrides}\n")
    if last:
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    if state:
        write_status(run, state)
    return run


def test_newest_matching_run(tmp_path):
    done = _run(tmp_path, 0, "tiny", [], "finished")
    _run(tmp_path, 1, "paper", [], "finished")
    other = _run(tmp_path, 2, "tiny", ["optim.lr=1"], "finished")
    _run(tmp_path, 3, "tiny", [], "running")
    no_last = _run(tmp_path, 4, "tiny", [], "finished", last=False)
    broken = tmp_path / "audiovae" / "version_5"
    broken.mkdir()
    (broken / "config.yaml").write_text("[not yaml")  # passed over, never an error
    assert find_run(tmp_path, "audiovae", "tiny", [], finished=True) == no_last
    assert find_run(tmp_path, "audiovae", "tiny", finished=True, with_last=True) == other  # any overrides
    assert find_run(tmp_path, "audiovae", "tiny", [], finished=True, with_last=True) == done
    assert find_run(tmp_path, "audiovae", "tiny", ["optim.lr=1"]) == other
    assert find_run(tmp_path, "audiovae", "small") is None and find_run(tmp_path, "nothing", "tiny") is None
    assert run_of_checkpoint(done / "checkpoints" / "last.ckpt") == done
    assert run_of_checkpoint(done / "exported.ckpt") == done
