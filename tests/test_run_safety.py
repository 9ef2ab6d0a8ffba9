"""A run folder is never damaged by a command that fails, never written by two processes, and
never loses its newer checkpoints to a resume from an older one; nothing is created for a run
whose settings do not validate."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tts_overrides
from tests.helpers.toy_module import toy_experiment
from voxlab.checkpoint import CheckpointError, load_checkpoint
from voxlab.cli.train import main, train
from voxlab.config import ConfigError
from voxlab.locks import FolderLocked
from voxlab.runs import run_lock

ROOT = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (and the folder's lock file beside it) -> its content hash."""
    files = [p for p in folder.rglob("*") if p.is_file()] + list(folder.parent.glob(f".{folder.name}.lock"))
    return {str(p.relative_to(folder.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def toy(tmp_path):
    return toy_experiment(tmp_path, run={"checkpoint_every_steps": 2, "keep_checkpoints": -1},
                          trainer={"max_steps": 6, "log_every_n_steps": 1})


def test_a_failed_resume_leaves_the_run_byte_for_byte(toy, capsys):
    run = train(toy)
    before = snapshot(run)
    bad = {"module.hidden=3": (CheckpointError, "different architecture.*weights would be missing.*net.weight"),
           "nonfinite.policy=skp": (ConfigError, "nonfinite.policy='skp'.*did you mean 'skip'"),
           "trainer.precision=banana": (ConfigError, "trainer settings were refused.*trainer.precision=banana"),
           "data.max_batch_size=0": (ConfigError, "data.max_batch_size=0"),
           "optim.lrr=1": (ConfigError, "unknown key 'optim.lrr'")}
    for override, (kind, message) in bad.items():
        with pytest.raises(kind, match=message):
            train(None, overrides=["trainer.max_steps=8", override], resume=str(run))
        assert snapshot(run) == before, override
    assert main(["--resume", str(run), "module.hidden=3"]) == 2
    err = capsys.readouterr().err
    assert "different architecture" in err and "Traceback" not in err and snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    again = train(None, overrides=["trainer.max_steps=8"], resume=str(run))  # and it still resumes
    assert again == run and load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 8


def test_an_older_checkpoint_of_a_run_continues_in_a_new_version(toy):
    run = train(toy)
    last = run / "checkpoints" / "last.ckpt"
    before = snapshot(run)
    branch = train(None, overrides=["trainer.max_steps=8"], resume=str(run / "checkpoints" / "step_0000002.ckpt"))
    assert branch == run.parent / "version_1"
    assert snapshot(run) == before and load_checkpoint(last)["global_step"] == 6
    record = json.loads((branch / "branch.json").read_text())
    assert record == {"from_run": str(run), "from_checkpoint": str(run / "checkpoints" / "step_0000002.ckpt"),
                      "from_step": 2}
    assert load_checkpoint(branch / "checkpoints" / "last.ckpt")["global_step"] == 8
    # the run's newest checkpoint named explicitly continues in place
    assert train(None, overrides=["trainer.max_steps=7"], resume=str(last)) == run
    assert load_checkpoint(last)["global_step"] == 7


def test_a_second_process_on_a_run_stops_naming_the_holder(toy, capsys):
    run = train(toy)
    before = snapshot(run)
    with run_lock(run):  # as another live process would hold it
        with pytest.raises(FolderLocked, match=rf"in use by pid {os.getpid()} on {socket.gethostname()}"):
            train(None, overrides=["trainer.max_steps=8"], resume=str(run))
        assert main(["--resume", str(run), "trainer.max_steps=8"]) == 2
        assert f"in use by pid {os.getpid()}" in capsys.readouterr().err
    after = snapshot(run)
    assert after == before  # the holder's lock file went with it
    # a lock file left by a killed process (nobody holds its flock) is taken over, with a note
    (run.parent / f".{run.name}.lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere",
                                                               "command": "python -m voxlab.cli.train"}))
    train(None, overrides=["trainer.max_steps=8"], resume=str(run))
    err = capsys.readouterr().err
    assert "taking over a stale lock" in err and "pid 999999 on elsewhere" in err
    assert not (run.parent / f".{run.name}.lock").exists()


def test_two_processes_resuming_one_run_never_write_it_together(toy):
    run = train(toy)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys,time; from voxlab.runs import run_lock; lock = run_lock(sys.argv[1]).acquire(); "
        "print('held', flush=True); sys.stdin.readline()"), str(run)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        with pytest.raises(FolderLocked, match=rf"in use by pid {holder.pid}"):
            train(None, overrides=["trainer.max_steps=8"], resume=str(run))
    finally:
        holder.communicate("\n", timeout=60)
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 6


def test_settings_that_fail_validation_create_no_version_folder(toy, tmp_path, capsys):
    runs = tmp_path / "runs" / "toy"
    for override in ("trainer.precision=banana", "trainer.strategy=nope", "nonfinite.min_batches=0"):
        assert main(["--exp", toy, override]) == 2
        err = capsys.readouterr().err
        assert override.split("=")[0] in err and "Traceback" not in err
        assert not runs.exists() or not any(runs.iterdir()), override


def test_a_read_only_runs_folder_is_one_clear_message(toy, tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    if os.geteuid() == 0:  # root writes into read-only folders; sysfs refuses even root
        runs = Path("/sys/voxlab_runs")
    try:
        assert main(["--exp", toy, f"run.root={runs}"]) == 2
    finally:
        (tmp_path / "runs").chmod(0o755)
    err = capsys.readouterr().err
    assert f"cannot create the run folder {runs / 'toy' / 'version_0'}" in err and "Traceback" not in err


def test_a_full_disk_while_saving_a_checkpoint_is_one_clear_message(tmp_path):
    """A file-size limit makes the write fail as a full disk does (torch's zip writer: "unexpected
    pos"); only the soft limit is lowered, so it is put back afterwards."""
    import resource
    import signal

    import torch

    from voxlab.checkpoint import atomic_torch_save

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (4000, hard))
    try:
        with pytest.raises(CheckpointError, match=r"last.ckpt: could not be written .*disk full"):
            atomic_torch_save({"w": torch.zeros(10000)}, tmp_path / "last.ckpt")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert not list(tmp_path.iterdir())  # no temporary file left, nothing half-written


def _other_weights(ckpt: Path) -> None:
    """The same checkpoint with every VAE weight nudged: another VAE, as training on would give."""
    from voxlab.checkpoint import atomic_torch_save

    obj = load_checkpoint(ckpt)
    obj["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    atomic_torch_save(obj, ckpt)


def test_a_resume_uses_exactly_the_vae_the_run_started_with(tts_assets):
    """`vae.path=auto` is pinned when the run starts (path + fingerprint): a newer finished VAE run
    does not change what a resume encodes with, and a changed or missing VAE stops the resume."""
    import shutil

    from test_exact_resume import vae_overrides

    root, full, vae_dir = tts_assets
    corpus = root / "pinned_corpus"  # a few utterances of the session's corpus: less to encode
    corpus.mkdir()
    for name, n in (("train.jsonl", 6), ("val.jsonl", 2), ("vocab.txt", None), ("lm_text.txt", None)):
        lines = (full / name).read_text().splitlines(keepends=True)
        (corpus / name).write_text("".join(lines[:n] if n else lines))
    (corpus / "wavs").symlink_to(full / "wavs")
    runs = root / "pinned_runs"
    first = train("audiovae", "tiny", vae_overrides(root, corpus, steps=1, runs="pinned_runs")
                  + ["callbacks.audio_logging=null", "trainer.limit_val_batches=0"])
    tts = train("d256s9", "tiny", tts_overrides(root, corpus, vae_dir, steps=1)
                + [f"run.root={runs}", "vae.path=auto", "callbacks.tts_samples._target_=null"])
    saved = yaml.safe_load((tts / "config.yaml").read_text())["vae"]
    assert saved["path"] == str((first / "checkpoints" / "last.ckpt").resolve()) and len(saved["fingerprint"]) == 16
    caches = sorted(p.name for p in (corpus / "latents").iterdir())
    newer = shutil.copytree(first, first.parent / "version_1")  # a newer finished VAE run: `auto` would pick it
    _other_weights(newer / "checkpoints" / "last.ckpt")
    train(None, resume=str(tts))  # nothing left to train, but the data (and so the cache) is set up again
    assert yaml.safe_load((tts / "config.yaml").read_text())["vae"] == saved
    assert sorted(p.name for p in (corpus / "latents").iterdir()) == caches  # nothing encoded with another VAE
    before = snapshot(tts)  # the backbone's architecture is checked against the checkpoint too
    with pytest.raises(CheckpointError, match="different architecture.*change shape"):
        train(None, overrides=["trainer.max_steps=3", "model.dit.hidden_dim=48"], resume=str(tts))
    assert snapshot(tts) == before
    _other_weights(first / "checkpoints" / "last.ckpt")  # the pinned VAE changed in place
    with pytest.raises(FileNotFoundError, match=f"now holds other weights.*{saved['fingerprint']}"):
        train(None, overrides=["trainer.max_steps=3"], resume=str(tts))
    (first / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=f"started with the VAE of fingerprint {saved['fingerprint']}"):
        train(None, overrides=["trainer.max_steps=3"], resume=str(tts))
    assert snapshot(tts) == before


def test_a_manifest_that_is_not_utf8_names_the_file_and_line(tmp_path):
    from datamodules.manifest import ManifestError, read_manifest

    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"audio": "a.wav", "text": "ok"}\n{"audio": "b.wav", "text": "caf\xe9"}\n')
    with pytest.raises(ManifestError, match=rf"{path}:2: not UTF-8 text \(byte 0xe9\)"):
        read_manifest(path)


def test_voxlab_run_dir_naming_a_folder_that_holds_anything_is_refused(toy, tmp_path, monkeypatch, capsys):
    """VOXLAB_RUN_DIR naming a finished run (as given, through a symlink or `..`), a run's bare
    checkpoints or a user's folder: one line, nothing written; an empty or new folder is taken."""
    run = train(toy)
    (tmp_path / "alias").symlink_to(run)
    only_ckpts = tmp_path / "ckpts_only"
    (only_ckpts / "checkpoints").mkdir(parents=True)
    (only_ckpts / "checkpoints" / "last.ckpt").write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    before = {f: snapshot(f) for f in (run, only_ckpts, mine)}
    for given in (run, tmp_path / "alias", run / "checkpoints" / "..", only_ckpts, mine):
        monkeypatch.setenv("VOXLAB_RUN_DIR", str(given))
        assert main(["--exp", toy, "trainer.max_steps=2"]) == 2, given
        err = capsys.readouterr().err
        assert "VOXLAB_RUN_DIR=" in err and "never writes into a folder" in err and "Traceback" not in err, given
    assert {f: snapshot(f) for f in (run, only_ckpts, mine)} == before
    for fresh in (tmp_path / "empty", tmp_path / "new"):
        if fresh.name == "empty":
            fresh.mkdir()
        monkeypatch.setenv("VOXLAB_RUN_DIR", str(fresh))
        assert train(toy, overrides=["trainer.max_steps=2"]) == fresh
        assert load_checkpoint(fresh / "checkpoints" / "last.ckpt")["global_step"] == 2


def test_the_run_lock_belongs_to_the_folder_not_to_the_path_given(toy, tmp_path):
    """Two RESUMEs of one run never both go on, whatever path each names it by: a symlink to the
    folder, a symlink to its parent, a `..` spelling; the folder itself is locked (its inode), so
    a lock taken through another mount or lock file holds too."""
    run = train(toy)
    (tmp_path / "run_link").symlink_to(run)
    (tmp_path / "parent_link").symlink_to(run.parent)
    spellings = [tmp_path / "run_link", tmp_path / "parent_link" / run.name, run / "checkpoints" / ".."]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for held, other in [(spellings[0], run), (run, spellings[1]), (spellings[1], spellings[2])]:
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys; from voxlab.runs import run_lock; lock = run_lock(sys.argv[1]).acquire(); "
            "print('held', flush=True); sys.stdin.readline()"), str(held)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        try:
            with pytest.raises(FolderLocked, match=rf"in use by pid {holder.pid}"):
                train(None, overrides=["trainer.max_steps=8"], resume=str(other))
        finally:
            holder.communicate("\n", timeout=60)
        assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 6, (held, other)
    from voxlab.locks import FolderLock

    with FolderLock(run, what="run folder", lock_file=tmp_path / "elsewhere.lock"):  # as another mount would
        with pytest.raises(FolderLocked):
            train(None, overrides=["trainer.max_steps=8"], resume=str(run))
    assert train(None, overrides=["trainer.max_steps=8"], resume=str(spellings[0])) == spellings[0]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 8


def test_a_resume_continues_from_the_highest_step_whatever_the_file_times(toy):
    """Modification times say nothing of training steps: an older step checkpoint touched, copied
    back or restored (newer on disk than last.ckpt), or last.ckpt set back, never makes RESUME
    restart from that older step and replace the newer checkpoints."""
    from voxlab.runs import resolve_resume

    run = train(toy)
    ckpts = run / "checkpoints"
    now = ckpts.joinpath("last.ckpt").stat().st_mtime
    for name, offset in (("step_0000002.ckpt", 3600), ("step_0000004.ckpt", 60), ("last.ckpt", -7200),
                         ("step_0000006.ckpt", -3600)):
        os.utime(ckpts / name, (now + offset, now + offset))
    newer = {n: hashlib.sha256((ckpts / n).read_bytes()).hexdigest() for n in ("step_0000004.ckpt", "step_0000006.ckpt")}
    assert resolve_resume(run) == (run, ckpts / "last.ckpt", False)
    assert train(None, overrides=["trainer.max_steps=8"], resume=str(run)) == run
    assert load_checkpoint(ckpts / "last.ckpt")["global_step"] == 8
    assert {n: hashlib.sha256((ckpts / n).read_bytes()).hexdigest() for n in newer} == newer
    # last.ckpt unreadable: the highest step checkpoint that loads, not the most recently touched
    (ckpts / "last.ckpt").write_bytes(b"torn")
    os.utime(ckpts / "step_0000002.ckpt", (now + 9999, now + 9999))
    assert resolve_resume(run)[1] == ckpts / "step_0000008.ckpt"


def test_a_resume_whose_override_fails_inside_fit_leaves_the_run_as_it_was(toy, capsys):
    """An override that passes the config checks but fails where Lightning uses it (the optimizer's
    learning rate, the dataloader) must not rewrite config.yaml or status.json: a plain RESUME
    afterwards still continues the run."""
    run = train(toy)
    before = snapshot(run)
    for override in ("optim.lr=-1", "optim.lr=-1e-9", "datamodule.fail_in_dataloader=true"):
        with pytest.raises((ConfigError, RuntimeError)):
            train(None, overrides=["trainer.max_steps=8", override], resume=str(run))
        assert snapshot(run) == before, override
    assert main(["--resume", str(run), "optim.lr=-0.5"]) == 2  # the optimizer is built dry first: one line
    err = capsys.readouterr().err
    assert "optim.lr=-0.5" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before
    # a dataloader that fails inside fit: one line too, for a resume and (variant) for a new run
    assert main(["--resume", str(run), "datamodule.fail_in_dataloader=true"]) == 1
    err = capsys.readouterr().err
    assert "error: the run could not start: " in err and f"{run} is as it was" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    versions = sorted(p.name for p in run.parent.iterdir())
    assert main(["--exp", toy, "datamodule.fail_in_dataloader=true"]) == 1
    err = capsys.readouterr().err
    assert "no run folder was left" in err and "Traceback" not in err
    assert sorted(p.name for p in run.parent.iterdir()) == versions
    assert snapshot(run) == before
    assert train(None, overrides=["trainer.max_steps=8"], resume=str(run)) == run
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 8


def _train_on_a_full_disk(args: list[str], limit: int) -> subprocess.CompletedProcess:
    """`python -m voxlab.cli.train ARGS` where no file may grow past `limit` bytes: a write past it
    fails (EFBIG) after writing what fits, as on a full disk (SIGXFSZ ignored, so no kill)."""
    import resource
    import signal

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.run([sys.executable, "-m", "voxlab.cli.train", *args], preexec_fn=limited, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_config_yaml_is_written_whole_or_not_at_all_on_a_full_disk(toy, tmp_path):
    """A resume on a full disk leaves the previous config.yaml (never a torn one: the run stays
    resumable); a new run on a full disk is one line naming the file and leaves no folder."""
    run = train(toy)
    before = snapshot(run)
    limit = (run / "config.yaml").stat().st_size // 2  # the new config does not fit; the small records do
    done = _train_on_a_full_disk(["--resume", str(run), "trainer.max_steps=8"], limit)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"{run / 'config.yaml'}: could not be written" in done.stderr and "Traceback" not in done.stderr
    assert snapshot(run) == before
    new = _train_on_a_full_disk(["--exp", toy, f"run.root={tmp_path / 'other_runs'}"], limit)
    assert new.returncode == 2 and "config.yaml: could not be written" in new.stderr, new.stderr[-3000:]
    assert not list((tmp_path / "other_runs" / "toy").iterdir())
    assert train(None, overrides=["trainer.max_steps=8"], resume=str(run)) == run  # space freed: it resumes
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 8


def test_a_new_run_that_fails_before_its_first_step_leaves_no_folder(toy, tmp_path, monkeypatch):
    """Nothing to resume, so nothing left: the version folder goes; a user's empty VOXLAB_RUN_DIR
    stays, empty (a run that fails after its first step keeps its folder and status: test_train_entry)."""
    with pytest.raises(RuntimeError, match="toy dataloader failure"):
        train(toy, overrides=["datamodule.fail_in_dataloader=true"])
    assert not any((tmp_path / "runs" / "toy").iterdir())
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setenv("VOXLAB_RUN_DIR", str(mine))
    with pytest.raises(RuntimeError, match="toy dataloader failure"):
        train(toy, overrides=["datamodule.fail_in_dataloader=true"])
    assert mine.is_dir() and not any(mine.iterdir()) and not list(tmp_path.glob(".mine.lock"))
