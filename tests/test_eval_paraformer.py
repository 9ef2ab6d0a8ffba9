"""funasr paraformer-zh backend on a tiny random model folder in ModelScope's layout.

Kept apart from the other tests: importing funasr takes ~15 s and prints a lot.
"""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("funasr")

from eval.asr.paraformer_asr import ParaformerASR, resolve_paraformer  # noqa: E402
from eval.errors import MissingWeightsError  # noqa: E402
from eval.tiny_backends import PARAFORMER_TOKENS, make_tiny_paraformer  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_paraformer(tmp_path_factory.mktemp("paraformer") / "paraformer-zh")


@pytest.fixture(scope="module")
def asr(folder):
    return ParaformerASR(folder, device="cpu", batch_size=2)


def _wavs(*lengths):
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_folder_has_the_real_layout(folder):
    for name in ("config.yaml", "configuration.json", "model.pt", "tokens.json", "seg_dict", "am.mvn"):
        assert (folder / name).is_file(), name
    metas = json.loads((folder / "configuration.json").read_text())["file_path_metas"]
    assert metas["init_param"] == "model.pt" and metas["frontend_conf"]["cmvn_file"] == "am.mvn"


def test_loads_through_funasr_automodel_and_transcribes_in_batches(asr):
    assert type(asr.model.model).__name__ == "SeacoParaformer"
    wavs = _wavs(32000, 16000, 24000)
    texts = asr.transcribe(wavs)  # batches of 2 then 1
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    vocab = set(PARAFORMER_TOKENS)
    assert all(tok in vocab for t in texts for tok in t.split())  # decoded with tokens.json
    assert texts == [asr.transcribe([w])[0] for w in wavs]
    info = asr.info()
    assert info["name"] == "funasr-paraformer-zh" and info["version"]


def test_missing_folder_names_the_expected_files(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        resolve_paraformer(tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "model.pt" in msg and "--paraformer" in msg
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.yaml").write_text("model: SeacoParaformer\n")
    with pytest.raises(MissingWeightsError, match="lacks model.pt, am.mvn, tokens.json or tokens.txt"):
        resolve_paraformer(tmp_path / "partial")


def test_funasr_not_registered_message_is_replaced(folder, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    cfg = (broken / "config.yaml").read_text(encoding="utf-8")
    (broken / "config.yaml").write_text(cfg.replace("model: SeacoParaformer", "model: NoSuchParaformer"),
                                        encoding="utf-8")
    with pytest.raises(MissingWeightsError) as err:
        ParaformerASR(broken)
    msg = str(err.value)
    assert str(broken) in msg and "config.yaml" in msg and "--paraformer" in msg


def test_partial_weights_are_refused(folder, tmp_path):
    broken = tmp_path / "partial_weights"
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    state = torch.load(broken / "model.pt", weights_only=True)
    dropped = sorted(state)[0]
    del state[dropped]
    torch.save(state, broken / "model.pt")
    with pytest.raises(MissingWeightsError, match="1 missing"):
        ParaformerASR(broken)
