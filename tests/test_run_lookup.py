"""voxlab.runs: the one run lookup (newest run of an experiment at a scale, with given overrides,
finished or not) and checkpoint -> run folder, as `vae.path=auto`, the demo and sweeps use them."""
from pathlib import Path

from voxlab.runs import find_run, has_last_checkpoint, last_checkpoint, run_of_checkpoint, write_status

ROOT = Path(__file__).resolve().parent.parent


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


def test_last_checkpoint_has_one_home(tmp_path):
    """The run folder's last checkpoint is spelled in voxlab/runs.py only: a loader or callback that
    builds the path itself again (and drifts from where RunFolder saves it) fails here."""
    run = _run(tmp_path, 0, "tiny", [], "finished")
    assert last_checkpoint(run) == run / "checkpoints" / "last.ckpt" and has_last_checkpoint(run)
    assert not has_last_checkpoint(_run(tmp_path, 1, "tiny", [], None, last=False))
    assert not has_last_checkpoint(last_checkpoint(run))  # the file itself is not a run folder
    shipped = [p for folder in ("voxlab", "models", "datamodules", "lightning_modules", "eval", "callbacks",
                                "experiments", "scripts") for p in (ROOT / folder).rglob("*")
               if p.is_file() and p.suffix in (".py", ".yaml", ".sh")]
    spelled = sorted(str(p.relative_to(ROOT)) for p in shipped if "last.ckpt" in p.read_text(errors="ignore"))
    assert spelled == ["voxlab/runs.py"]
