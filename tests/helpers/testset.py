"""A mini Seed-TTS-Eval test set (four lines, English and Chinese) built from synthetic tones."""
from __future__ import annotations

from pathlib import Path

from eval.tiny_backends import write_tone

MINI_LINES = [
    # utt, prompt_text, target_text, lang
    ("en_001", "The quick brown fox.", "Hello world, it's a test.", "en"),
    ("en_002", "A prompt for voice two.", "Numbers like 42 stay as they are!", "en"),
    ("zh_001", "这是提示语音。", "你好，世界！", "zh"),
    ("zh_002", "另一个提示。", "我们用AI技术。", "zh"),
]


def make_testset(root: Path, gen_dir: Path | None = None, with_gt: bool = True) -> Path:
    """Seed-TTS-Eval layout under `root`: meta.lst (5 fields) + prompt-wavs/ + gt wavs; when
    `gen_dir` is given, a generated `<utt>.wav` for each line too. Returns the meta.lst path."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (utt, prompt_text, target_text, _) in enumerate(MINI_LINES):
        write_tone(root / "prompt-wavs" / f"{utt}_prompt.wav", 1.2, 110 + 30 * i, seed=i)
        fields = [utt, prompt_text, f"prompt-wavs/{utt}_prompt.wav", target_text]
        if with_gt:
            write_tone(root / "wavs" / f"{utt}.wav", 1.0, 115 + 30 * i, seed=10 + i)
            fields.append(f"wavs/{utt}.wav")
        lines.append("|".join(fields))
        if gen_dir is not None:
            write_tone(Path(gen_dir) / f"{utt}.wav", 1.0, 112 + 30 * i, seed=20 + i)
    meta = root / "meta.lst"
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return meta
