"""The TTS samples callback: fixed validation texts are synthesised at each validation and logged
(wav + png under <run>/samples/, audio + figures in the TensorBoard event file)."""
import soundfile as sf

from conftest import tts_overrides
from voxlab.config import compose
from voxlab.cli.train import train


def _event_bytes(run):
    return sum(p.stat().st_size for p in (run / "tensorboard").rglob("events.out.tfevents.*"))


def test_samples_written_and_logged(tts_assets):
    root, corpus, vae_dir = tts_assets
    over = tts_overrides(root, corpus, vae_dir, steps=4) + ["callbacks.tts_samples.max_len=6",
                                                             "callbacks.tts_samples.timesteps=2"]
    assert compose("d256s9", "tiny", over).callbacks.tts_samples._target_  # on by default
    run = train("d256s9", "tiny", over)
    samples = run / "samples"
    assert sorted(p.name for p in samples.iterdir()) == ["ground_truth", "step_000002", "step_000004"]
    for folder in samples.iterdir():
        assert sorted(p.name for p in folder.iterdir()) == ["item0.png", "item0.wav", "item1.png", "item1.wav"]
    wav, sr = sf.read(samples / "step_000004" / "item0.wav")
    assert sr == 16000 and 0 < len(wav) <= 6 * 2 * 640  # at most max_len patches of 2 x 640 samples
    gt, _ = sf.read(samples / "ground_truth" / "item0.wav")
    assert len(gt) > 0 and abs(gt).max() > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"audio": 0, "images": 0}).Reload()
    tags = acc.Tags()
    assert {"val_audio/tts_item0/generated", "val_audio/tts_item1/ground_truth"} <= set(tags["audio"])
    assert "val_mel/tts_item1/generated" in tags["images"]
    assert [e.step for e in acc.Audio("val_audio/tts_item0/generated")] == [2, 4]
    assert len(acc.Audio("val_audio/tts_item0/ground_truth")) == 1  # logged once
    assert _event_bytes(run) > 20_000  # audio and PNG figures are in the event file, not just scalars

