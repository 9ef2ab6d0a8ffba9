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
