"""Seed-TTS-Eval meta.lst reader: validation of every line, subsets."""
import pytest

from tests.helpers.testset import MINI_LINES, make_testset
from eval import testset as ts
from eval.testset import TestSetError, read_testset, resolve_meta


def test_reads_the_official_layout_with_paths_relative_to_the_meta_file(tmp_path):
    meta = make_testset(tmp_path / "en")
    items = read_testset(meta)
    assert [it.utt for it in items] == [u for u, *_ in MINI_LINES]
    first = items[0]
    assert first.prompt_wav == tmp_path / "en" / "prompt-wavs" / "en_001_prompt.wav"
    assert first.gt_wav == tmp_path / "en" / "wavs" / "en_001.wav"
    assert first.target_text == "Hello world, it's a test."
    assert first.line_no == 1


def test_four_field_lines_and_folder_argument(tmp_path):
    make_testset(tmp_path / "zh", with_gt=False)
    items = read_testset(tmp_path / "zh")  # a folder holding meta.lst
    assert all(it.gt_wav is None for it in items)
    assert ts.testset_name(tmp_path / "zh") == "zh"


def test_limit_and_utts(tmp_path):
    meta = make_testset(tmp_path)
    assert [it.utt for it in read_testset(meta, limit=2)] == ["en_001", "en_002"]
    # file order is kept, whatever the order asked
    assert [it.utt for it in read_testset(meta, utts=["zh_002", "en_002"])] == ["en_002", "zh_002"]
    assert [it.utt for it in read_testset(meta, utts=["zh_002", "en_002"], limit=1)] == ["en_002"]


def test_unknown_utts_are_listed(tmp_path):
    meta = make_testset(tmp_path)
    with pytest.raises(TestSetError, match=r"2 requested utts not in the test set:\n  nope\n  zilch"):
        read_testset(meta, utts=["nope", "en_001", "zilch"])


def test_every_bad_line_is_reported_in_one_error(tmp_path):
    meta = make_testset(tmp_path)
    good = meta.read_text(encoding="utf-8").splitlines()
    bad = good + [
        "only|three|fields",
        "x1|prompt|prompt-wavs/missing.wav|target",
        "x2||prompt-wavs/en_001_prompt.wav|target",
        "x3|prompt|prompt-wavs/en_001_prompt.wav|",
        "en_001|prompt|prompt-wavs/en_001_prompt.wav|dup",
        "../x4|prompt|prompt-wavs/en_001_prompt.wav|target",
        "x5|prompt|prompt-wavs/en_001_prompt.wav|target|wavs/missing_gt.wav",
        "",
    ]
    meta.write_text("\n".join(bad) + "\n", encoding="utf-8")
    with pytest.raises(TestSetError) as err:
        read_testset(meta)
    msg = str(err.value)
    assert "7 of 11 lines invalid" in msg
    assert "line 5: 3 '|'-separated fields" in msg
    assert "line 6 (x1): prompt_wav not found" in msg and "missing.wav" in msg
    assert "line 7 (x2): empty prompt_text" in msg
    assert "line 8 (x3): empty target_text" in msg
    assert "line 9: utt 'en_001' already used on line 1" in msg
    assert "not a plain file name" in msg
    assert "gt_wav not found" in msg


def test_missing_test_set_and_folder_without_meta(tmp_path):
    with pytest.raises(TestSetError, match="not found"):
        resolve_meta(tmp_path / "absent")
    (tmp_path / "hardcase.lst").write_text("", encoding="utf-8")
    with pytest.raises(TestSetError, match="hardcase.lst"):
        resolve_meta(tmp_path)
    with pytest.raises(TestSetError, match="no utterances"):
        read_testset(tmp_path / "hardcase.lst")


def test_byte_order_mark_is_not_part_of_the_first_utt(tmp_path):
    meta = make_testset(tmp_path)
    meta.write_text("\ufeff" + meta.read_text(encoding="utf-8"), encoding="utf-8")
    assert read_testset(meta)[0].utt == MINI_LINES[0][0]


def test_an_utt_too_long_for_its_generated_files_is_refused_before_generating(tmp_path, capsys):
    """A name whose generated files (`<utt>.wav`, `<utt>.gen.json`, the temporary
    `.<utt>.wav.<pid>.<random>.tmp`) would pass the 255-byte name limit is a bad line, before any
    generation: 252 ASCII characters, 80 CJK characters (240 bytes), a control character; 229
    bytes, the longest that fits, is kept and its files can be written."""
    from eval.__main__ import main as eval_main
    from voxlab.audio import save_audio

    meta = make_testset(tmp_path / "ts")
    good = meta.read_text(encoding="utf-8").splitlines()
    rest = "|prompt|prompt-wavs/en_001_prompt.wav|target"
    fits = "b" * 229
    meta.write_text("\n".join(good + ["a" * 252 + rest, "语" * 80 + rest, "x\x1by" + rest, fits + rest]) + "\n",
                    encoding="utf-8")
    with pytest.raises(TestSetError) as err:
        read_testset(meta)
    msg = str(err.value)
    assert "3 of 8 lines invalid" in msg and "line 5 (" + "a" * 40 + "...): utt" in msg
    assert "252 characters (252 bytes in UTF-8)" in msg and "80 characters (240 bytes in UTF-8)" in msg
    assert "line 7 (x\x1by): utt 'x\\x1by' is not a plain file name" in msg
    meta.write_text("\n".join(good + ["a" * 252 + rest]) + "\n", encoding="utf-8")
    code = eval_main(["--testset", str(meta), "--model", str(tmp_path / "no_model.ckpt"), "--wavs",
                      str(tmp_path / "gen"), "--sim", "none", "--out", str(tmp_path / "res")])
    out = capsys.readouterr().err
    assert code == 2 and "252 characters" in out and "Traceback" not in out
    assert not (tmp_path / "gen").exists()
    meta.write_text("\n".join(good + [fits + rest]) + "\n", encoding="utf-8")
    assert read_testset(meta)[-1].utt == fits
    save_audio(tmp_path / f"{fits}.wav", [0.0] * 160, 16000)  # its longest name fits
    (tmp_path / f"{fits}.gen.json").write_text("{}")
