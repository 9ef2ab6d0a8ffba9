"""Dataset recipes (`make prepare`): each corpus is written here in its released layout (file
naming, transcript files, metadata columns, official splits), tiny, and must come out as
manifests with the corpus's own (normalised) text, speakers, languages, durations, every
utterance once, and audio paths that resolve from the manifest's folder."""
import json

import numpy as np
import pytest
import soundfile as sf

from datamodules.manifest import read_manifest
from datamodules.recipes import RecipeError, prepare
from voxlab.cli.prepare import main as prepare_main

SECONDS = 0.3


def _tone(path, sr, fmt=None, seconds=SECONDS):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format=fmt)


def _text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def ljspeech(root):
    src = root / "LJSpeech-1.1"
    rows = {"LJ001-0001": ("Printing, in the only sense with which we are at present concerned,",) * 2,
            "LJ001-0002": ("in being comparatively modern, 1863.", "in being comparatively modern, eighteen sixty-three."),
            "LJ002-0010": ("Mr. Smith went to No. 5.", "Mister Smith went to Number five.")}
    _text(src / "metadata.csv", "".join(f"{u}|{raw}|{norm}\n" for u, (raw, norm) in rows.items()))
    for u in rows:
        _tone(src / "wavs" / f"{u}.wav", 22050)
    want = {u: (norm, "LJ", "en", None) for u, (_, norm) in rows.items()}
    return src, want


def libritts_r(root):
    src = root / "LibriTTS_R"
    parts = {"train-clean-100": ("19", "198", "train"), "train-other-500": ("20", "205", "train"),
             "dev-clean": ("84", "121123", "val"), "test-clean": ("121", "121726", "test")}
    _text(src / "SPEAKERS.txt", ";ID  |SEX| SUBSET           |MINUTES| NAME\n"
          "19   | F | train-clean-100  | 25.19 | Kara Shallenberg\n84   | F | dev-clean        | 8.02 | Christie Nowak\n")
    want = {}
    for part, (spk, chapter, split) in parts.items():
        folder = src / part / spk / chapter
        trans, book = [], []
        for n in range(2):
            utt = f"{spk}_{chapter}_{n:06d}_000000"
            orig, norm = f"Chapter {n + 1}, Mr. Brown's tale.", f"Chapter {['one', 'two'][n]}, Mister Brown's tale."
            _tone(folder / f"{utt}.wav", 24000)
            _text(folder / f"{utt}.original.txt", orig)
            _text(folder / f"{utt}.normalized.txt", norm)
            trans.append(f"{utt}\t{orig}\t{norm}\n")
            book.append(f"{utt}\t{orig}\t{norm}\ttrue\t{18.5 + n}\n")
            want[utt] = (norm, spk, "en", split)
        _text(folder / f"{spk}_{chapter}.trans.tsv", "".join(trans))
        _text(folder / f"{spk}_{chapter}.book.tsv", "".join(book))
    return src, want


def vctk(root):
    src = root / "VCTK-Corpus-0.92"
    _text(src / "speaker-info.txt", "ID  AGE  GENDER  ACCENTS  REGION COMMENTS \n"
          "p225  23  F    English    Southern  England\np226  22  M    English    Surrey\n"
          "p315  23  M    American    Connecticut  (text missing)\n")
    want = {}
    for spk, n in [("p225", 1), ("p225", 2), ("p226", 1)]:
        stem = f"{spk}_{n:03d}"
        for mic in ("mic1", "mic2"):
            _tone(src / "wav48_silence_trimmed" / spk / f"{stem}_{mic}.flac", 48000)
        _text(src / "txt" / spk / f"{stem}.txt", f"Please call Stella number {n}.\n")
        # raw text: the text frontend spells the number (voxlab/text_frontend.py)
        want[f"{stem}_mic2"] = (f"Please call Stella number {['one', 'two'][n - 1]}.", spk, "en", None)
    _tone(src / "wav48_silence_trimmed" / "p315" / "p315_001_mic2.flac", 48000)  # as released: no text
    return src, want


def aishell3(root):
    src = root / "data_aishell3"
    _text(src / "spk-info.txt", "# speaker\tage\tgender\taccent\nSSB0005\tA\tfemale\tnorth\nSSB0011\tB\tmale\tsouth\n")
    parts = {"train": [("SSB00050001", "广 guang3 州 zhou1 女 nv3 大 da4 学 xue2 生 sheng1", "广州女大学生"),
                       ("SSB00050002", "你 ni3 好 hao3", "你好")],
             "test": [("SSB00110001", "今 jin1 天 tian1", "今天")]}
    labels = ["# tone labels", ""]
    want = {}
    for part, rows in parts.items():
        _text(src / part / "content.txt", "".join(f"{u}.wav\t{c}\n" for u, c, _ in rows))
        for u, content, chars in rows:
            _tone(src / part / "wav" / u[:7] / f"{u}.wav", 44100)
            labels.append(f"{u}|{' '.join(content.split()[1::2])}|{chars}")
            want[u] = (chars, u[:7], "zh", {"train": "train", "test": "val"}[part])
    _text(src / "train" / "label_train-set.txt", "\n".join(labels) + "\n")
    return src, want


def emilia(root):
    src = root / "Emilia"
    want = {}
    spoken = {" We met in 2019.": "We met in twenty nineteen."}  # raw text: the text frontend spells it
    for lang, texts in {"EN": [" Well, that's the point.", " We met in 2019."], "ZH": ["我们今天开会。"]}.items():
        batch = f"{lang}_B00000"
        lines = []
        for n, text in enumerate(texts):
            spk = f"{batch}_S0000{n % 2}"
            utt = f"{spk}_W00000{n}"
            wav = f"{batch}/{spk}/mp3/{utt}.mp3"
            _tone(src / "raw" / lang / wav, 24000, fmt="MP3")
            lines.append(json.dumps({"id": utt, "wav": wav, "text": text, "duration": SECONDS, "speaker": spk,
                                     "language": lang.lower(), "dnsmos": 3.3}, ensure_ascii=False))
            want[utt] = (spoken.get(text, text.strip()), spk, lang.lower(), None)
        _text(src / "raw" / lang / f"{batch}.jsonl", "\n".join(lines) + "\n")
    return src, want


def wenetspeech4tts(root):
    src = root / "WenetSpeech4TTS"
    rows = [("Premium", 9, "X0000015306_83500032_S00110-S00112", "那我们就开始吧"),
            ("Standard", 3, "X0000000001_1_S00001-S00002", "今天天气很好"),
            ("Basic", 0, "Y0000000002_7_S00010", "好的")]
    filelist, mos = [], {s: [] for s in ("Basic", "Premium", "Standard")}
    want = {}
    for subset, part, utt, text in rows:
        folder = src / subset / f"WenetSpeech4TTS_{subset}_{part}"
        _tone(folder / "wavs" / f"{utt}.wav", 16000)
        _text(folder / "txts" / f"{utt}.txt", f"{utt}\t{text}\n[0.0, 0.3]\n")
        filelist.append(f"{utt} ../{subset}/WenetSpeech4TTS_{subset}_{part}/wavs/{utt}.wav\n")
        for s in ("Basic", "Standard", "Premium")[: {"Basic": 1, "Standard": 2, "Premium": 3}[subset]]:
            mos[s].append(f"{utt} 3.6\n")
        want[utt] = (text, "", "zh", None)
    _text(src / "filelists" / "Basic_filelist.lst", "".join(filelist))
    for s, lines in mos.items():
        _text(src / "DNSMOS_P808Scores" / f"{s}_DNSMOS.lst", "".join(lines))
    return src, want


FIXTURES = [ljspeech, libritts_r, vctk, aishell3, emilia, wenetspeech4tts]


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.__name__ for f in FIXTURES])
def test_recipe_reads_the_released_layout(tmp_path, fixture):
    src, want = fixture(tmp_path)
    out = tmp_path / "manifests"
    written = prepare(fixture.__name__, src, out, val_fraction=0.34)
    got = {}
    for split, (path, n, _) in written.items():
        entries, report = read_manifest(path)  # our validator: every audio path resolves and reads
        assert not report.bad and len(entries) == n, report.summary()
        for e in entries:
            assert e.utt not in got, f"{e.utt} written twice"
            got[e.utt] = (e.text, e.speaker, e.lang, split, e.duration)
    assert sorted(got) == sorted(want)  # every utterance once (and nothing else, e.g. VCTK's p315)
    for utt, (text, speaker, lang, split) in want.items():
        assert got[utt][:3] == (text, speaker, lang), utt
        assert got[utt][4] == pytest.approx(SECONDS, abs=2e-3)
        if split:  # the corpus's official split
            assert got[utt][3] == split, utt
    if not any(split for *_, split in want.values()):  # held out by id hash: both splits used
        assert set(written) == {"train", "val"}
    line = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert not line["audio"].startswith("/")  # relative to the manifest's folder


def test_prepare_never_overwrites_and_names_the_layout_problem(tmp_path, capsys):
    src, _ = ljspeech(tmp_path)
    out = tmp_path / "out"
    assert prepare_main(["--dataset", "ljspeech", "--src", str(src), "--out", str(out)]) == 0
    before = (out / "train.jsonl").read_bytes()
    assert prepare_main(["--dataset", "ljspeech", "--src", str(src), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "train.jsonl").read_bytes() == before
    (src / "metadata.csv").unlink()
    with pytest.raises(RecipeError, match="metadata.csv"):
        prepare("ljspeech", src, tmp_path / "other")
    with pytest.raises(RecipeError, match="unknown DATASET"):
        prepare("timit", src, tmp_path / "other")
