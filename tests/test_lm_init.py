"""TSLM initialisation from a local Hugging Face causal-LM folder (models.lm_init)."""
from __future__ import annotations

import pytest
import torch

from models.lm_init import LMInitError, init_lm
from models.minicpm import MiniCPMConfig, MiniCPMModel
from models.voxcpm import VoxCPMBackbone



@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and robust when the 2 cores are shared."""
    torch.set_num_threads(1)
SHAPE = dict(vocab_size=200, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2)


def llama(num_layers=3, seed=0, **over):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**SHAPE, **over}, num_hidden_layers=num_layers, rms_norm_eps=1e-5, rope_theta=10000.0,
                      max_position_embeddings=256, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm weights, so copying them is checked too
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    model = llama()
    folder = tmp_path_factory.mktemp("llama")
    model.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return model, folder


def ours(num_layers=3, seed=1, **over):
    torch.manual_seed(seed)
    return MiniCPMModel(MiniCPMConfig(**{**SHAPE, **over}, num_hidden_layers=num_layers, max_position_embeddings=256)).eval()


def hidden(lm, ids):
    with torch.no_grad():
        return lm(lm.embed(ids))


def reference(model, ids):
    with torch.no_grad():
        return model.model(input_ids=ids).last_hidden_state


def test_full_init_from_safetensors_reproduces_llama(lm_folder):
    model, folder = lm_folder
    lm = ours()
    report = init_lm(lm, mode="full", path=str(folder))
    assert report["layers_copied"] == 3 and report["notes"] == []
    ids = torch.randint(0, 200, (2, 33))
    assert (hidden(lm, ids) - reference(model, ids)).abs().max() < 1e-5


def test_full_init_from_pytorch_model_bin(lm_folder, tmp_path):
    model, _ = lm_folder
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(model.config.to_json_string())
    lm = ours()
    init_lm(lm, mode="full", path=str(tmp_path))
    ids = torch.randint(0, 200, (1, 20))
    assert (hidden(lm, ids) - reference(model, ids)).abs().max() < 1e-5


def test_partial_init_copies_the_first_layers_only(lm_folder):
    model, folder = lm_folder
    lm = ours(num_layers=5)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    report = init_lm(lm, mode="partial", path=str(folder), num_layers=2)
    assert report["layers_copied"] == 2
    src = model.model.state_dict()
    after = lm.state_dict()
    for k, v in after.items():
        layer = int(k.split(".")[1]) if k.startswith("layers.") else None
        if layer is None or layer < 2:  # embedding, final norm, layers 0-1: from the LM
            assert torch.equal(v, src[k]), k
        else:                           # layers 2-4: untouched random init
            assert torch.equal(v, before[k]), k


def test_backbone_applies_lm_init_from_config(lm_folder):
    model, folder = lm_folder
    local = dict(hidden_dim=32, ffn_dim=64, num_heads=2, num_layers=1)
    bb = VoxCPMBackbone(lm={**SHAPE, "num_hidden_layers": 3}, encoder=local, dit=local, feat_dim=8,
                        residual_lm_layers=1, fsq={"latent_dim": 8},
                        lm_init={"mode": "full", "path": str(folder)})
    assert not torch.equal(bb.base_lm.embed_tokens.weight, model.model.embed_tokens.weight)  # not in __init__
    bb.apply_lm_init()
    ids = torch.randint(0, 200, (1, 12))
    assert (hidden(bb.base_lm.eval(), ids) - reference(model, ids)).abs().max() < 1e-5


def test_shape_mismatch_names_the_tensor(lm_folder):
    _, folder = lm_folder
    with pytest.raises(LMInitError, match=r"embed_tokens\.weight.*\(200, 64\).*\(300, 64\)"):
        init_lm(ours(vocab_size=300), mode="full", path=str(folder))
    with pytest.raises(LMInitError, match=r"layers\.0\.mlp\.gate_proj\.weight"):
        init_lm(ours(intermediate_size=128), mode="full", path=str(folder))


def test_missing_folder_names_path_and_key(tmp_path):
    missing = tmp_path / "no_such_lm"
    with pytest.raises(LMInitError, match=rf"{missing}.*model\.lm_init\.path"):
        init_lm(ours(), mode="full", path=str(missing))
    with pytest.raises(LMInitError, match=r"model\.lm_init\.path is not set"):
        init_lm(ours(), mode="partial", path=None, num_layers=2)
    with pytest.raises(LMInitError, match=r"pytorch_model\.bin"):
        init_lm(ours(), mode="full", path=str(tmp_path))  # a folder without weights


def test_bad_mode_depth_and_num_layers(lm_folder):
    _, folder = lm_folder
    with pytest.raises(LMInitError, match=r"model\.lm_init\.mode"):
        init_lm(ours(), mode="half", path=str(folder))
    with pytest.raises(LMInitError, match=r"partial.*model\.lm_init\.num_layers"):
        init_lm(ours(num_layers=4), mode="full", path=str(folder))
    with pytest.raises(LMInitError, match=r"model\.lm_init\.num_layers"):
        init_lm(ours(num_layers=5), mode="partial", path=str(folder), num_layers=4)  # LM has only 3
    assert init_lm(ours(), mode="none") is None


def test_settings_shapes_cannot_show_are_reported(lm_folder):
    _, folder = lm_folder
    report = init_lm(ours(rope_theta=500000.0), mode="full", path=str(folder))
    assert any("rope_theta" in note for note in report["notes"])
    report = init_lm(ours(use_mup=True), mode="full", path=str(folder))
    assert any("muP" in note for note in report["notes"])


# ---- the text tokenizer must be the LM's own ------------------------------------------------------
def _save_tokenizer(folder, words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>").save_pretrained(folder)


def test_lm_tokenizer_files_are_compared_with_the_text_tokenizer(lm_folder, tmp_path):
    from voxlab.text import CharTokenizer, HFTokenizer

    model, _ = lm_folder
    folder = tmp_path / "lm"
    model.save_pretrained(folder)
    words = ["<unk>", "<s>", "</s>"] + [f"\u2581w{i}" for i in range(150)]
    _save_tokenizer(folder, words)
    report = init_lm(ours(), mode="full", path=str(folder), tokenizer=HFTokenizer(folder))  # its own
    assert "tokenizer files" in report["vocabulary"]
    _save_tokenizer(tmp_path / "other", words[:50] + words[51:] + ["\u2581x"])  # one token moved
    with pytest.raises(LMInitError, match=rf"HFTokenizer from {tmp_path / 'other'}.*not the LM's own.*"
                                          rf"tokenizer files of {folder}.*\b103 of its tokens differ \('\u2581w48' is 50 here, 51 in the LM"):
        init_lm(ours(), mode="partial", num_layers=1, path=str(folder), tokenizer=HFTokenizer(tmp_path / "other"))
    chars = CharTokenizer(list("abc "))  # the paper scale's default frontend beside a real LM
    with pytest.raises(LMInitError, match=rf"CharTokenizer from a character list.*tokenizer files of {folder}"):
        init_lm(ours(), mode="full", path=str(folder), tokenizer=chars)
    bare = tmp_path / "bare"
    model.save_pretrained(bare)  # weights only: nothing says which tokenizer
    with pytest.raises(LMInitError, match=rf"{bare}: no tokenizer files .*cannot check"):
        init_lm(ours(), mode="full", path=str(bare), tokenizer=chars)


def test_tiny_scale_lm_pretrained_here_accepts_its_corpus_vocabulary(tmp_path):
    """What training does at tiny scale (lightning_modules.tts): build the missing tiny LM on the corpus's
    characters, then init with the corpus tokenizer. A vocabulary with one character more is refused."""
    import json

    from voxlab.config import compose, instantiate
    from voxlab.cli.lm import ensure_lm
    from voxlab.text import CharTokenizer, build_tokenizer

    texts = ["the cat sat on the mat.", "小猫在家里。"] * 30
    (tmp_path / "lm_text.txt").write_text("\n".join(texts) + "\n")
    CharTokenizer.build(texts, tmp_path / "vocab.txt")
    cfg = compose("d256s9", "tiny", [f"data.root={tmp_path}", f"model.lm_init.path={tmp_path / 'lm'}",
                                     "lm_pretrain.steps=2", "lm_pretrain.batch_size=2", "lm_pretrain.seq_len=16"])
    ensure_lm(cfg, progress=False)
    tok = build_tokenizer(cfg.text)
    report = instantiate(cfg.model).apply_lm_init(tokenizer=tok)
    assert "characters recorded in" in report["vocabulary"] and report["layers_copied"] == 4
    record = tmp_path / "lm" / "voxlab_lm.json"
    old = json.loads(record.read_text(encoding="utf-8"))
    del old["vocabulary"]  # an LM recorded before the characters were: its vocab_file is read
    record.write_text(json.dumps(old))
    assert "named in" in instantiate(cfg.model).apply_lm_init(tokenizer=tok)["vocabulary"]
    more = CharTokenizer(sorted(set(tok.chars) | {"b"}))  # "b" sorts in early: later ids shift
    with pytest.raises(LMInitError, match=r"CharTokenizer.*not the LM's own.*vocab\.txt"):
        instantiate(cfg.model).apply_lm_init(tokenizer=more)
