"""Shards (`make shards`) and streaming them: the split across ranks and workers, the bounded
shuffle window, exact resume with workers, and the tiny experiments training from shards exactly
as from files (same losses for the same seed), resumed exactly."""
import csv

import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.audio import AudioDataset
from datamodules.shards.data import AudioDecoder
from datamodules.shards.format import ShardError, read_index
from datamodules.shards.stream import STATE_KEY, ShardStream, start_position
from datamodules.shards.write import write_shards
from tests.conftest import tts_overrides
from voxlab.checkpoint import load_checkpoint
from voxlab.cli.shards import main as shards_main


@pytest.fixture(scope="module")
def audio_shards(tts_assets, tmp_path_factory):
    _, corpus, _ = tts_assets
    out = tmp_path_factory.mktemp("shards") / "audio"
    assert shards_main(["--manifest", str(corpus / "train.jsonl"), "--out", str(out), "--target-mb", "0.15"]) == 0
    return out


def _stream(folder, buffer=1000, train=True, rank=0, world=1, workers=0, budget=48000 * 3):
    decoder = AudioDecoder(AudioDataset([], 16000), folder)
    return ShardStream(folder, decoder, budget, 8, buffer, seed=3, train=train, rank=rank, world_size=world,
                       workers=workers)


def _epoch0(stream, s):
    utts = []
    for batch in stream._batches(s, start_position()):
        if batch[STATE_KEY]["epoch"] != 0:
            break
        utts += batch["utt"]
    return utts


def test_shards_hold_every_entry_once_and_split_without_overlap(audio_shards, tts_assets):
    index = read_index(audio_shards)
    n = index["entries"]
    assert len(index["shards"]) >= 4 and sum(s["count"] for s in index["shards"]) == n
    for world, workers in [(1, 1), (2, 1), (2, 2)]:
        seen = []
        for rank in range(world):
            stream = _stream(audio_shards, rank=rank, world=world, workers=workers)
            for s in stream.stream_ids():
                seen += _epoch0(stream, s)
        assert len(seen) == len(set(seen)) == n, (world, workers)  # disjoint, and together the whole corpus
    with pytest.raises(ShardError, match="shards for"):
        _stream(audio_shards, world=len(index["shards"]) + 1)


def test_shuffle_window_is_bounded_and_epochs_differ(audio_shards):
    one = _stream(audio_shards, buffer=1)
    assert all(len(b["utt"]) == 1 for _, b in zip(range(10), one._batches(0, start_position())))
    stream = _stream(audio_shards, buffer=5)
    epochs = {}
    for batch in stream._batches(0, start_position()):
        epochs.setdefault(batch[STATE_KEY]["epoch"], []).extend(batch["utt"])
        if len(epochs) == 3:
            break
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]
    ordered = [b["utt"] for b in _stream(audio_shards, train=False)._batches(0, start_position())]
    assert sum(ordered, []) != epochs[0]  # not the shards' order


def _utts(loader, n):
    out, states = [], []
    for batch, _ in zip(loader, range(n)):
        out.append(batch["utt"])
        states.append(batch[STATE_KEY])
    return out, states


def test_resume_with_two_workers_continues_exactly(audio_shards):
    """Straight 9 batches = 5, then a new loader resumed from the recorded positions, 4 more."""
    straight, _ = _utts(DataLoader(_stream(audio_shards, buffer=4, workers=2), batch_size=None, num_workers=2), 9)
    first, states = _utts(DataLoader(_stream(audio_shards, buffer=4, workers=2), batch_size=None, num_workers=2), 5)
    resumed = _stream(audio_shards, buffer=4, workers=2)
    resumed.positions = {st["stream"]: {k: v for k, v in st.items() if k != "stream"} for st in states}
    resumed.rotation = 5 % 2
    rest, _ = _utts(DataLoader(resumed, batch_size=None, num_workers=2), 4)
    assert first + rest == straight


def _losses(run):
    rows = csv.DictReader(open(run / "csv" / "metrics.csv"))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


STEPS = 8  # the files' epoch is 5 batches here: the last 3 steps are in the second epoch


def _batches_equal(a, b):
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert (v.shape == b[k].shape and bool((v == b[k]).all())) if torch.is_tensor(v) else v == b[k], k


def _datamodules(file_cls, shard_cls, overrides, folders):
    from voxlab.config import compose

    sharded = [f"data.train_shards={folders['train']}", f"data.val_shards={folders['val']}",
               "data.shuffle_buffer=100000"]  # one window: the whole corpus
    out = []
    for cls in (file_cls, shard_cls):
        dm = cls(compose(overrides[0], "tiny", overrides[1] + sharded))
        if hasattr(dm, "validate"):
            dm.validate()
        dm.prepare_data()
        dm.setup("fit")
        out.append(dm)
    return out


def test_shard_batches_are_the_file_batches(tts_assets, audio_shards, tmp_path):
    """Same data, same seed: the shard DataModules give the file DataModules' batches, tensor for
    tensor (latents with same-speaker prompts; waveforms with random crops)."""
    from datamodules.audio import AudioDataModule
    from datamodules.shards import ShardAudioDataModule, ShardTTSDataModule
    from datamodules.tts import TTSDataModule

    torch.set_num_threads(1)  # encoding the tiny corpus twice: one thread is several times faster on a busy machine
    root, corpus, vae_dir = tts_assets
    latents = {split: write_shards(corpus / f"{split}.jsonl", tmp_path / split, target_mb=0.01,
                                   vae_path=str(vae_dir), progress=False) for split in ("train", "val")}
    tts = tts_overrides(root, corpus, vae_dir) + ["data.frame_budget=300", "data.prompt_prob=0.5"]
    val_audio = write_shards(corpus / "val.jsonl", tmp_path / "val_audio", target_mb=0.15, progress=False)
    vae = [f"data.root={corpus}", "data.crop_seconds=0.4", "data.frame_budget=25600"]
    for file_cls, shard_cls, overrides, folders in [
            (TTSDataModule, ShardTTSDataModule, ("d256s9", tts), latents),
            (AudioDataModule, ShardAudioDataModule, ("audiovae", vae), {"train": audio_shards, "val": val_audio})]:
        files, shards = _datamodules(file_cls, shard_cls, overrides, folders)
        rng = torch.get_rng_state()
        loader, stream = files.train_dataloader(), iter(shards.train_dataloader())
        for batch in list(loader) + list(loader):  # two epochs
            _batches_equal(batch, shards.on_before_batch_transfer(next(stream), 0))
        for a, b in zip(files.val_dataloader(), shards.val_dataloader()):
            _batches_equal(a, shards.on_before_batch_transfer(b, 0))
        # New iterators (each epoch, each validation) leave torch's RNG, which the model's noise
        # draws from, where it was: training randomness does not depend on when loaders start.
        assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.slow
def test_tiny_tts_trains_from_shards_as_from_files_and_resumes_exactly(tts_assets, tmp_path):
    from voxlab.cli.train import train

    root, corpus, vae_dir = tts_assets
    folders = {}
    for split in ("train", "val"):
        folders[split] = write_shards(corpus / f"{split}.jsonl", tmp_path / split, target_mb=0.01,
                                      vae_path=str(vae_dir), progress=False)
    assert len(read_index(folders["train"])["shards"]) > 1
    common = tts_overrides(root, corpus, vae_dir, STEPS) + [
        "trainer.log_every_n_steps=1", "trainer.val_check_interval=1000", "data.frame_budget=300",
        "data.prompt_prob=0.5", f"run.root={tmp_path / 'runs'}"]
    sharded = common + ["datamodule._target_=datamodules.shards.ShardTTSDataModule",
                        f"data.train_shards={folders['train']}", f"data.val_shards={folders['val']}",
                        "data.shuffle_buffer=100000"]  # one window: the whole corpus
    files = _losses(train("d256s9", "tiny", common))
    straight = train("d256s9", "tiny", sharded)
    half = train("d256s9", "tiny", sharded + [f"trainer.max_steps={STEPS // 2}"])
    train(None, resume=str(half), overrides=[f"trainer.max_steps={STEPS}"])
    a, b = _losses(straight), _losses(half)
    assert sorted(files) == sorted(a) == sorted(b) == list(range(STEPS))
    # Across the files' epoch boundary too: the file loader's new iterator draws from its own
    # generator, not from the RNG of the model's noise (datamodules.base.private_generator).
    print("files vs shards:", max(abs(files[s] - a[s]) for s in a), "resume:", max(abs(a[s] - b[s]) for s in a))
    assert max(abs(files[s] - a[s]) for s in a) <= 1e-6
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6  # across the stream's epoch boundary too
    wa = load_checkpoint(straight / "checkpoints" / "last.ckpt")["state_dict"]
    wb = load_checkpoint(half / "checkpoints" / "last.ckpt")["state_dict"]
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6


def test_shard_writing_refuses_another_set_and_resumes(audio_shards, tts_assets, tmp_path):
    _, corpus, _ = tts_assets
    with pytest.raises(ShardError, match="another source"):
        write_shards(corpus / "val.jsonl", audio_shards, target_mb=0.15, progress=False)
    out = tmp_path / "partial"
    write_shards(corpus / "train.jsonl", out, target_mb=0.15, progress=False)
    (out / "shards.json").unlink()
    (out / "shard-00001.json").unlink()  # as if interrupted: only that shard is written again
    before = (out / "shard-00000.tar").stat().st_mtime_ns
    write_shards(corpus / "train.jsonl", out, target_mb=0.15, progress=False)
    assert (out / "shard-00000.tar").stat().st_mtime_ns == before
    assert read_index(out) == read_index(audio_shards) | {"source": read_index(out)["source"]}
    (out / "shard-00001.tar").write_bytes((out / "shard-00001.tar").read_bytes()[:700])  # torn by a crash
    with pytest.raises(ShardError, match="shard-00001.tar"):
        _epoch0(_stream(out, train=False), 0)


def test_latent_cache_at_scale_bf16_built_by_ranks_in_parallel(tts_assets, tmp_path):
    """Unset data.train_shards: the shard TTS DataModule builds the latent cache as shards beside the
    manifest, keyed by the VAE and the dtype; bfloat16 halves the bytes and keeps the file path's
    batches up to bf16 rounding. Two ranks writing their shares give the one-process set."""
    import shutil

    from datamodules.shards import ShardTTSDataModule
    from datamodules.shards.write import finish
    from datamodules.tts import TTSDataModule
    from voxlab.config import compose

    torch.set_num_threads(1)  # see test_shard_batches_are_the_file_batches
    root, corpus_src, vae_dir = tts_assets
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_src, corpus, ignore=shutil.ignore_patterns("latents", "shards"))
    overrides = tts_overrides(root, corpus, vae_dir) + [
        "data.frame_budget=300", "data.prompt_prob=0.5", "data.shuffle_buffer=100000", "data.latent_dtype=bfloat16",
        "data.shard_mb=0.005"]
    shards = ShardTTSDataModule(compose("d256s9", "tiny", overrides))
    shards.setup("fit")
    folder = shards.folder("train")
    assert folder.parent.name.endswith("-bfloat16") and folder.parent.parent == corpus / "latents"
    index = read_index(folder)
    assert index["latents"]["key"] == folder.parent.name and len(index["shards"]) > 2
    assert all(set(s) == {"name", "count", "seconds", "bytes"} for s in index["shards"])  # no per-utterance index
    files = TTSDataModule(compose("d256s9", "tiny", overrides))
    if hasattr(files, "validate"):
        files.validate()
    files.prepare_data()
    files.setup("fit")
    for a, b in zip(files.train_dataloader(), shards.train_dataloader()):
        b = shards.on_before_batch_transfer(b, 0)
        assert a["utt"] == b["utt"] and a["prompt_utt"] == b["prompt_utt"]
        assert torch.equal(a["text_tokens"], b["text_tokens"]) and torch.equal(a["audio_mask"], b["audio_mask"])
        assert torch.equal(a["audio_feats"].bfloat16().float(), b["audio_feats"])  # exactly bf16 of the fp32 latents
    one = read_index(folder)
    split = tmp_path / "two_ranks"
    for rank in (1, 0):
        write_shards(corpus / "train.jsonl", split, 0.005, str(vae_dir), "bf16", True, 2, rank=rank, world=2,
                     progress=False)
        assert (split / "shards.json").is_file() == (rank == 0)  # complete once both shares are there
    assert finish(split) and read_index(split)["shards"] == one["shards"]
    for name in ("shard-00000.tar", "shard-00001.tar"):
        assert (split / name).read_bytes() == (folder / name).read_bytes()


@pytest.mark.slow
def test_tiny_audiovae_trains_from_shards_as_from_files(tts_assets, audio_shards, tmp_path):
    """The AudioVAE (random crops, mel-only then adversarial steps) from audio shards: the same
    losses as from files for the same seed."""
    from tests.test_exact_resume import _vae_losses, vae_overrides
    from voxlab.cli.train import train

    root, corpus, _ = tts_assets
    val = write_shards(corpus / "val.jsonl", tmp_path / "val", target_mb=0.15, progress=False)
    common = vae_overrides(tmp_path, corpus, steps=3)
    files = _vae_losses(train("audiovae", "tiny", common))
    shards = _vae_losses(train("audiovae", "tiny", common + [
        "datamodule._target_=datamodules.shards.ShardAudioDataModule", f"data.train_shards={audio_shards}",
        f"data.val_shards={val}", "data.shuffle_buffer=100000"]))
    assert sorted(files) == sorted(shards) == [1, 2, 3]
    assert all(files[s][0] == shards[s][0] for s in files), (files, shards)
    assert all(files[s][1] == shards[s][1] or files[s][1] != files[s][1] for s in files), (files, shards)


@pytest.mark.slow
def test_tts_streams_shards_with_ddp_on_two_processes(tts_assets, tmp_path):
    """Two ranks (gloo): the latent cache at scale is built by both ranks at once (shard i by rank
    i % 2), each rank streams its own shards, and the checkpoint records both ranks' positions."""
    import os
    import shutil
    import subprocess
    import sys

    root, corpus_src, vae_dir = tts_assets
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_src, corpus, ignore=shutil.ignore_patterns("latents", "shards"))
    args = tts_overrides(root, corpus, vae_dir, steps=3) + [
        "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu", f"run.root={tmp_path / 'runs'}",
        "datamodule._target_=datamodules.shards.ShardTTSDataModule", "data.shard_mb=0.01"]
    out = subprocess.run([sys.executable, "-m", "voxlab.cli.train", "--exp", "d256s9", "--scale", "tiny", *args],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    built = list((corpus / "latents").glob("*-float32/train-targets+prompts/shards.json"))
    assert len(built) == 1 and len(read_index(built[0].parent)["shards"]) > 2
    ckpt = load_checkpoint(tmp_path / "runs" / "d256s9" / "version_0" / "checkpoints" / "last.ckpt")
    state = ckpt["ShardTTSDataModule"]
    assert ckpt["global_step"] == 3 and state["streams"] == 2 and sorted(state["positions"]) == ["0", "1"]


def _manifest_copy(corpus, folder, name):
    """`name` of the corpus with absolute audio paths, in `folder` (its latent cache goes there)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in (corpus / name).read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["audio"] = str(corpus / row["audio"])
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder / name


def test_a_damaged_shard_set_or_latent_index_is_one_line_naming_the_file(tts_assets, audio_shards, tmp_path, capsys):
    """A shard cut short or missing, `shards.json` cut short or not a mapping, the latent cache's
    `index.json` cut short, empty or not a mapping: `make train` / `make cache` stop with one line
    naming the file (shards: before any run folder is made), never a ShardError/JSON traceback."""
    import shutil

    from datamodules.latents import CacheError, LatentStore
    from datamodules.tts import main as cache_main
    from tests.test_exact_resume import vae_overrides
    from voxlab.cli.train import main as train_main

    root, corpus, vae_dir = tts_assets

    def cut(path, keep=0.5):
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * keep)])

    damages = {"cut_shard": lambda d: cut(d / "shard-00001.tar"), "gone_shard": lambda d: (d / "shard-00000.tar").unlink(),
               "cut_index": lambda d: cut(d / "shards.json", 0.7), "list_index": lambda d: (d / "shards.json").write_text("[]")}
    for name, damage in damages.items():
        copy = tmp_path / name
        shutil.copytree(audio_shards, copy)
        damage(copy)
        named = copy / ("shards.json" if "index" in name else "shard-00001.tar" if name == "cut_shard" else "shard-00000.tar")
        with pytest.raises(ShardError, match=str(named)):
            read_index(copy)
        runs = tmp_path / f"runs_{name}"
        code = train_main(["--exp", "audiovae", "--scale", "tiny", *vae_overrides(tmp_path, corpus, steps=1),
                           f"run.root={runs}", "datamodule._target_=datamodules.shards.ShardAudioDataModule",
                           f"data.train_shards={copy}", f"data.val_shards={audio_shards}"])
        err = capsys.readouterr().err
        assert code == 2 and str(named) in err and "Traceback" not in err, name
        assert not runs.exists() or not any(runs.rglob("config.yaml")), name

    overrides = tts_overrides(root, corpus, vae_dir) + [
        f"data.train_manifest={_manifest_copy(corpus, tmp_path / 'data', 'train.jsonl')}",
        f"data.val_manifest={_manifest_copy(corpus, tmp_path / 'data', 'val.jsonl')}"]
    assert cache_main(["--exp", "d256s9", "--scale", "tiny", *overrides]) == 0
    index = next((tmp_path / "data" / "latents").rglob("index.json"))
    good = index.read_bytes()
    for damaged in (good[:len(good) // 2], b"", b"[1, 2]"):
        index.write_bytes(damaged)
        with pytest.raises(CacheError, match=str(index)):
            LatentStore(index.parent)
        assert cache_main(["--exp", "d256s9", "--scale", "tiny", *overrides]) == 2
        err = capsys.readouterr().err
        assert str(index) in err and "make cache" in err and "Traceback" not in err
        assert train_main(["--exp", "d256s9", "--scale", "tiny", *overrides]) == 2
        err = capsys.readouterr().err
        assert str(index) in err and "Traceback" not in err
