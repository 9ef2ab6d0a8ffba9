"""`make shards` again after the manifest changed (datamodules/shards/write.py): every shard ends up
holding the manifest's lines as they are now (texts, speakers, audio), whether the first build
finished or was interrupted; unchanged shards are kept."""
from __future__ import annotations

import json
import shutil

from datamodules.shards.format import meta_of, read_index, read_shard
from voxlab.cli.shards import main as shards_main


def manifest_copy(corpus, folder):
    folder.mkdir(parents=True)
    rows = [json.loads(x) for x in (corpus / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    for row in rows:
        audio = folder / "wavs" / (corpus / row["audio"]).name
        audio.parent.mkdir(exist_ok=True)
        shutil.copy(corpus / row["audio"], audio)  # our own copy: one may be replaced
        row["audio"] = str(audio)
    return save(folder / "train.jsonl", rows), rows


def save(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def held(out) -> dict[str, dict]:
    """utt -> (its shard meta, its audio bytes) of the finished set in `out`."""
    found = {}
    for shard in read_index(out)["shards"]:
        for sample in read_shard(out / shard["name"]):
            meta = meta_of(sample)
            found[meta["utt"]] = (meta, sample[meta["audio"]])
    return found


def build(manifest, out):
    assert shards_main(["--manifest", str(manifest), "--out", str(out), "--target-mb", "0.15"]) == 0


def test_shards_rebuilt_after_the_manifest_changed_hold_its_lines_as_they_are_now(tts_assets, tmp_path):
    _, corpus, _ = tts_assets
    manifest, rows = manifest_copy(corpus, tmp_path / "data")
    out = tmp_path / "shards"
    build(manifest, out)
    shard_count = len(read_index(out)["shards"])
    assert shard_count > 2
    untouched = out / "shard-00001.tar"
    kept = untouched.stat().st_mtime_ns

    # 1. a finished set, then a text corrected in the last shard
    rows[-1]["text"] = "a corrected transcript"
    build(save(manifest, rows), out)
    assert held(out)[rows[-1]["utt"]][0]["text"] == "a corrected transcript"
    assert untouched.stat().st_mtime_ns == kept  # its lines did not change: not written again

    # 2. an interrupted build (no shards.json, the last shard not done), then the first line's text and
    # speaker edited and another line's audio replaced by other audio
    (out / "shards.json").unlink()
    (out / f"shard-{shard_count - 1:05d}.json").unlink()
    rows[0].update(text="fixed first line", speaker="spk_fixed")
    other = rows[-1]["audio"]
    shutil.copy(rows[1]["audio"], other)
    build(save(manifest, rows), out)
    now = held(out)
    assert len(now) == len(rows)
    for row in rows:
        meta, audio = now[row["utt"]]
        assert (meta["text"], meta["speaker"]) == (row["text"], row["speaker"]), row["utt"]
        assert audio == open(row["audio"], "rb").read(), row["utt"]
    assert read_index(out)["lines"]
