"""`make lm`: the tiny text LM is trained and saved in the Hugging Face folder format."""
import pytest
from omegaconf import OmegaConf

from voxlab.config import ConfigError, compose
from voxlab.cli.lm import ensure_lm, pretrain_text_lm
from voxlab.text import CharTokenizer

LM = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
      "num_hidden_layers": 2, "kv_channels": None, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
      "rope_scaling": None, "max_position_embeddings": 256, "use_mup": False}


def test_pretrain_learns_and_saves_hf_folder(tmp_path):
    texts = ["the cat sat on the mat.", "a dog ran in the park.", "小猫在家里。"] * 40
    (tmp_path / "lm.txt").write_text("\n".join(texts) + "\n")
    CharTokenizer.build(texts, tmp_path / "vocab.txt")
    summary = pretrain_text_lm(tmp_path / "lm", LM, 256, tmp_path / "lm.txt", tmp_path / "vocab.txt",
                               steps=40, batch_size=4, seq_len=32, lr=1e-2, progress=False)
    assert summary["final_loss"] < summary["first_loss"] - 1.0
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tmp_path / "lm")
    assert model.config.hidden_size == 32 and (tmp_path / "lm" / "model.safetensors").is_file()


def test_vocab_larger_than_model_is_refused(tmp_path):
    (tmp_path / "lm.txt").write_text("abcdefghij\n" * 10)
    CharTokenizer.build(["abcdefghij"], tmp_path / "vocab.txt")
    with pytest.raises(ConfigError, match="vocab_size=130 is smaller"):
        pretrain_text_lm(tmp_path / "lm", LM, 130, tmp_path / "lm.txt", tmp_path / "vocab.txt", steps=1)


def test_paper_scale_without_lm_folder_names_the_key():
    cfg = compose("d256s9", "paper")
    with pytest.raises(ConfigError, match="set model.lm_init.path"):
        ensure_lm(cfg)
    assert ensure_lm(compose("no_lm_init", "paper")) is None


def test_a_phoneme_lm_reads_the_text_as_phonemes_and_lm_init_accepts_it(tmp_path):
    from models.lm_init import check_tokenizer
    from voxlab.text import PhonemeTokenizer

    texts = ["the cat sat on the mat.", "a dog ran in the park."] * 40
    (tmp_path / "lm.txt").write_text("\n".join(texts) + "\n")
    tok = PhonemeTokenizer()
    summary = pretrain_text_lm(tmp_path / "lm", LM, 256, tmp_path / "lm.txt", tmp_path / "absent_vocab.txt",
                               steps=30, batch_size=4, seq_len=32, lr=1e-2, progress=False, tokenizer=tok)
    assert summary["tokenizer"] == "phoneme" and summary["final_loss"] < summary["first_loss"] - 1.0
    assert "phoneme symbols" in check_tokenizer(tmp_path / "lm", PhonemeTokenizer())
    with pytest.raises(Exception, match="is not the LM.s own"):
        check_tokenizer(tmp_path / "lm", CharTokenizer(list("abc")))  # another front end's ids: refused


def test_make_lm_never_replaces_a_folder_it_did_not_create(tmp_path, capsys):
    from voxlab.cli.lm import main

    user = tmp_path / "models" / "my_lm"
    user.mkdir(parents=True)
    (user / "config.json").write_text("{}")
    (user / "model.safetensors").write_bytes(b"weights of mine")
    (tmp_path / "alias").symlink_to(tmp_path / "models")
    (tmp_path / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for path in (user, tmp_path / "alias" / "my_lm", tmp_path / "models" / "my_lm" / ".." / "my_lm",
                 tmp_path / "models", tmp_path / "notes.txt"):
        assert main(["--exp", "d256s9", f"model.lm_init.path={path}", "lm_pretrain.steps=1"]) == 2, path
        err = capsys.readouterr().err
        assert "model.lm_init.path=" in err and "Traceback" not in err, path
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    # its own folder (and an empty one) is replaced by make lm again
    (tmp_path / "lm.txt").write_text("the cat sat on the mat.\n" * 40)
    CharTokenizer.build(["the cat sat on the mat."], tmp_path / "vocab.txt")
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "empty"):
        pretrain_text_lm(out, LM, 256, tmp_path / "lm.txt", tmp_path / "vocab.txt", steps=1, batch_size=2,
                         seq_len=8, progress=False)
    assert (tmp_path / "empty" / "voxlab_lm.json").is_file()
