"""One reader per public corpus: its released layout -> `Utterance` rows, parsed by lhotse's recipes.

lhotse (`lhotse.recipes.<corpus>`) knows each corpus's file naming, transcript files and metadata
columns; we call its `prepare_*` function and keep what a manifest needs. `split` is the corpus's
own split where it ships one ("train", "val", "test"), else None (the writer holds out a val set).
Each reader states which text it takes: the corpus's normalised text where it gives one.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Utterance:
    utt: str
    audio: Path
    text: str
    duration: float
    speaker: str
    lang: str
    split: str | None = None


def _rows(recordings, supervisions, lang, split=None, text=None, speaker=None):
    """(RecordingSet, SupervisionSet) -> Utterance rows; `text`/`speaker` pick from a supervision."""
    out = []
    for sup in supervisions:
        rec = recordings[sup.recording_id]
        files = [s.source for s in rec.sources if s.type == "file"]
        if not files:
            raise ValueError(f"{rec.id}: lhotse gave no audio file for this recording")
        out.append(Utterance(sup.id, Path(files[0]), (text(sup) if text else sup.text).strip(), float(sup.duration),
                             speaker(sup) if speaker else (sup.speaker or ""), lang, split))
    return out


def ljspeech(src: Path, **_) -> list[Utterance]:
    """LJSpeech-1.1: metadata.csv `id|transcription|normalized transcription`, wavs/<id>.wav; one
    speaker, no official split. Text: the third (normalised) column."""
    from lhotse.recipes.ljspeech import prepare_ljspeech

    m = prepare_ljspeech(src)
    return _rows(m["recordings"], m["supervisions"], "en", text=lambda s: s.custom["normalized_text"],
                 speaker=lambda s: "LJ")


LIBRITTS_SPLITS = {"train": "train", "dev": "val", "test": "test"}  # part name prefix -> split


def libritts_r(src: Path, **_) -> list[Utterance]:
    """LibriTTS-R (and LibriTTS): <part>/<speaker>/<chapter>/<utt>.wav with <speaker>_<chapter>.trans.tsv
    (`id, original, normalised`) and .book.tsv. Official parts: train-* -> train, dev-* -> val,
    test-* -> test. Text: the normalised column (the content of each <utt>.normalized.txt)."""
    from lhotse.recipes.libritts import LIBRITTS, prepare_libritts

    parts = [p for p in LIBRITTS if (src / p).is_dir()]
    if not parts:
        raise FileNotFoundError(f"{src}: none of the LibriTTS-R parts ({', '.join(LIBRITTS)}) is there")
    out = []
    for part, m in prepare_libritts(src, dataset_parts=parts).items():
        out += _rows(m["recordings"], m["supervisions"], "en", split=LIBRITTS_SPLITS[part.split("-")[0]])
    return out


def vctk(src: Path, mic: str = "mic2", **_) -> list[Utterance]:
    """VCTK 0.92 (wav48_silence_trimmed/<spk>/<spk>_<n>_<mic>.flac, txt/<spk>/<spk>_<n>.txt,
    speaker-info.txt) or 0.80 (wav48/<spk>/<spk>_<n>.wav); no official split. `mic`: mic1 or mic2
    (0.92 only; lhotse's default mic2 has no p280)."""
    from lhotse.recipes.vctk import prepare_vctk

    v092 = (src / "wav48_silence_trimmed").is_dir()
    if not v092 and not (src / "wav48").is_dir():
        raise FileNotFoundError(f"{src}: neither wav48_silence_trimmed/ (VCTK 0.92) nor wav48/ (0.80) is there")
    m = prepare_vctk(src, use_edinburgh_vctk_url=v092, mic_id=mic)
    return _rows(m["recordings"], m["supervisions"], "en")


def aishell3(src: Path, **_) -> list[Utterance]:
    """AISHELL-3: {train,test}/content.txt (`<id>.wav<TAB>char pinyin char pinyin ...`),
    {train,test}/wav/<spk>/<id>.wav, spk-info.txt, train/label_train-set.txt. Official split:
    train -> train, test -> val. Text: the characters of content.txt (pinyin dropped)."""
    from lhotse.audio import RecordingSet
    from lhotse.recipes.aishell3 import prepare_aishell3

    out = []
    for part, m in prepare_aishell3(src).items():
        # lhotse 1.33 returns this dict with its two keys swapped: tell them apart by type
        recs, sups = m["recordings"], m["supervisions"]
        if not isinstance(recs, RecordingSet):
            recs, sups = sups, recs
        out += _rows(recs, sups, "zh", split={"train": "train", "test": "val"}[part])
    return out


EMILIA_LANGS = ("DE", "EN", "FR", "JA", "KO", "ZH")


def emilia(src: Path, lang: str | None = None, workers: int = 1, **_) -> list[Utterance]:
    """Emilia (the openemilia release): raw/<LANG>/<LANG>_B<n>.jsonl (one JSON per utterance: id,
    wav, text, duration, speaker, language, dnsmos) and raw/<LANG>/<LANG>_B<n>/<LANG>_B<n>_S<n>/mp3/
    <id>.mp3. SRC is the folder holding raw/ (or raw/ itself). `lang`: one language, default every
    one present. No official split."""
    from lhotse.recipes.emilia import prepare_emilia

    with tempfile.TemporaryDirectory() as tmp:
        root = src
        if not (src / "raw").is_dir():  # SRC is raw/ itself: give lhotse the folder above it
            root = Path(tmp)
            (root / "raw").symlink_to(src.resolve(), target_is_directory=True)
        langs = [lang.upper()] if lang else [x for x in EMILIA_LANGS if (root / "raw" / x).is_dir()]
        if not langs:
            raise FileNotFoundError(f"{src}: no language folder ({', '.join(EMILIA_LANGS)}) under raw/")
        out = []
        for code in langs:
            for cut in prepare_emilia(root, code, num_jobs=workers):
                sup = cut.supervisions[0]
                out.append(Utterance(sup.id, Path(cut.recording.sources[0].source).resolve(), sup.text.strip(),
                                     float(sup.duration), sup.speaker or "", (sup.language or code).lower()))
    return out


def wenetspeech4tts(src: Path, subset: str = "Basic", **_) -> list[Utterance]:
    """WenetSpeech4TTS: filelists/Basic_filelist.lst (`<id> ../<Subset>/<part>/wavs/<id>.wav`),
    <Subset>/<part>/txts/<id>.txt (`<id><TAB><text>` then timestamps), DNSMOS_P808Scores/*.lst.
    `subset`: Premium, Standard or Basic (each contains the one before). No official split; the
    corpus names no speakers (speaker left empty: no same-speaker prompts)."""
    from lhotse.recipes.wenetspeech4tts import prepare_wenetspeech4tts

    out = []
    for m in prepare_wenetspeech4tts(src, dataset_parts=subset).values():
        out += _rows(m["recordings"], m["supervisions"], "zh")
    return out


RECIPES = {"ljspeech": ljspeech, "libritts_r": libritts_r, "vctk": vctk, "aishell3": aishell3,
           "emilia": emilia, "wenetspeech4tts": wenetspeech4tts}
