"""Tiny random checkpoints in each evaluation backend's real on-disk format, and a voiced-like tone.

Used by `benchmarks/bench_eval.py` and the tests: the loading code is exercised exactly as with
the real weights (which cannot be downloaded here), only the sizes are small and the weights random.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from eval.sim.wavlm_ecapa import EcapaHead
from eval.sim.wespeaker_sim import ResNetSpeaker

SR = 16000


# ---------------------------------------------------------------- audio


def write_tone(path: Path, seconds: float, freq: float, seed: int = 0, sr: int = SR) -> Path:
    """A short voiced-like signal (harmonics + a little noise) so VAD-based trimming keeps it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wav = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    wav = 0.3 * wav * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav.astype(np.float32), sr)
    return path


# ---------------------------------------------------------------- whisper

TINY_WHISPER_DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2,
                         n_audio_layer=1, n_vocab=51866, n_text_ctx=32, n_text_state=32,
                         n_text_head=2, n_text_layer=1)
# the dimensions of openai-whisper "tiny" (multilingual), for speed measurements
WHISPER_TINY_SIZE_DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6,
                              n_audio_layer=4, n_vocab=51865, n_text_ctx=448, n_text_state=384,
                              n_text_head=6, n_text_layer=4)


def make_tiny_whisper(path: Path, dims: dict | None = None, seed: int = 0,
                      weight_std: float = 0.3) -> Path:
    """A random whisper checkpoint saved as openai-whisper's own files are: {"dims", "model_state_dict"}."""
    from whisper.model import ModelDimensions, Whisper

    dims = dict(dims or TINY_WHISPER_DIMS)
    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**dims))
    with torch.no_grad():  # large random weights: the decoded text then depends on the audio
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, weight_std)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": model.state_dict()}, path)
    return path


# ---------------------------------------------------------------- paraformer (funasr)

PARAFORMER_TOKENS = ["<blank>", "<s>", "</s>", "你", "好", "世", "界", "我", "们", "用", "技", "术",
                     "a", "i", "<unk>"]


def _paraformer_config(vocab: int, dim: int = 16) -> dict:
    """The structure of paraformer-zh's config.yaml (SeacoParaformer) at toy sizes."""
    sanm = dict(dropout_rate=0.0, positional_dropout_rate=0.0, kernel_size=11, sanm_shfit=0)
    return {
        "model": "SeacoParaformer",
        "model_conf": dict(ctc_weight=0.0, lsm_weight=0.1, length_normalized_loss=True,
                           predictor_weight=1.0, predictor_bias=1, sampling_ratio=0.75,
                           inner_dim=dim, bias_encoder_type="lstm", bias_encoder_bid=False,
                           seaco_lsm_weight=0.1, seaco_length_normalized_loss=True,
                           train_decoder=True, NO_BIAS=vocab - 2),
        "encoder": "SANMEncoder",
        "encoder_conf": dict(output_size=dim, attention_heads=2, linear_units=2 * dim, num_blocks=2,
                             attention_dropout_rate=0.0, input_layer="pe",
                             pos_enc_class="SinusoidalPositionEncoder", normalize_before=True,
                             selfattention_layer_type="sanm", **sanm),
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": dict(attention_heads=2, linear_units=2 * dim, num_blocks=2, att_layer_num=2,
                             self_attention_dropout_rate=0.0, src_attention_dropout_rate=0.0, **sanm),
        "seaco_decoder": "ParaformerSANMDecoder",
        "seaco_decoder_conf": dict(attention_heads=2, linear_units=2 * dim, num_blocks=1,
                                   att_layer_num=1, self_attention_dropout_rate=0.0,
                                   src_attention_dropout_rate=0.0,
                                   **{**sanm, "kernel_size": 21}),
        "predictor": "CifPredictorV3",
        "predictor_conf": dict(idim=dim, threshold=1.0, l_order=1, r_order=1, tail_threshold=0.45,
                               smooth_factor2=0.25, noise_threshold2=0.01, upsample_times=3,
                               use_cif1_cnn=False, upsample_type="cnn_blstm"),
        "frontend": "WavFrontend",
        "frontend_conf": dict(fs=16000, window="hamming", n_mels=80, frame_length=25,
                              frame_shift=10, lfr_m=7, lfr_n=6, dither=0.0),
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": dict(unk_symbol="<unk>", split_with_space=True),
    }


def _write_am_mvn(path: Path, dim: int, rng: np.random.Generator) -> None:
    """Kaldi nnet1 text CMVN (AddShift = -mean, Rescale = 1/std), as paraformer's am.mvn."""
    shift = " ".join(f"{v:.6f}" for v in -(8.0 + rng.random(dim)))
    scale = " ".join(f"{v:.6f}" for v in 0.2 + 0.05 * rng.random(dim))
    path.write_text(f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n"
                    f"<LearnRateCoef> 0 [ {shift} ]\n<Rescale> {dim} {dim}\n"
                    f"<LearnRateCoef> 0 [ {scale} ]\n</Nnet>\n", encoding="utf-8")


def make_tiny_paraformer(folder: Path, seed: int = 0) -> Path:
    """A random paraformer-zh folder as ModelScope ships it: config.yaml, configuration.json,
    model.pt, tokens.json, seg_dict, am.mvn. The weights are produced by funasr's own classes."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (folder / "config.yaml").write_text(
        yaml.safe_dump(_paraformer_config(len(PARAFORMER_TOKENS)), allow_unicode=True), encoding="utf-8")
    (folder / "tokens.json").write_text(json.dumps(PARAFORMER_TOKENS, ensure_ascii=False), encoding="utf-8")
    (folder / "seg_dict").write_text("a a\ni i\n", encoding="utf-8")
    _write_am_mvn(folder / "am.mvn", 80 * 7, rng)
    (folder / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "auto-speech-recognition",
        "model": {"type": "funasr"}, "pipeline": {"type": "funasr-pipeline"},
        "model_name_in_hub": {"ms": "", "hf": ""},
        "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                            "tokenizer_conf": {"token_list": "tokens.json", "seg_dict_file": "seg_dict"},
                            "frontend_conf": {"cmvn_file": "am.mvn"}}}, indent=2), encoding="utf-8")
    from funasr.register import tables
    import funasr  # noqa: F401  (registers the model classes)

    cfg = _paraformer_config(len(PARAFORMER_TOKENS))
    torch.manual_seed(seed)
    model_cls = tables.model_classes.get(cfg["model"])
    conf = {**cfg["model_conf"], **{k: v for k, v in cfg.items() if k != "model_conf"}}
    model = model_cls(input_size=80 * 7, vocab_size=len(PARAFORMER_TOKENS), **conf)
    torch.save(model.state_dict(), folder / "model.pt")
    return folder


# ---------------------------------------------------------------- wespeaker


def make_tiny_wespeaker(folder: Path, seed: int = 0) -> Path:
    """A random wespeaker folder: config.yaml (ResNet34, TSTP; `m_channels` kept tiny) and
    avg_model.pt (a plain state dict that also carries the training-only `projection.*` head)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    args = dict(feat_dim=16, embed_dim=8, pooling_func="TSTP", two_emb_layer=False, m_channels=4)
    config = {"model": "ResNet34", "model_args": args, "projection_args": {"project_type": "arc_margin"},
              "dataset_args": {"fbank_args": {"num_mel_bins": 16, "frame_shift": 10,
                                              "frame_length": 25, "dither": 1.0}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    torch.manual_seed(seed)
    model = ResNetSpeaker("ResNet34", **args)
    _randomize_batchnorm(model)
    state = dict(model.state_dict())
    state["projection.weight"] = torch.randn(5, 8)
    torch.save(state, folder / "avg_model.pt")
    return folder


def _randomize_batchnorm(model: torch.nn.Module) -> None:
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)


# ---------------------------------------------------------------- WavLM + ECAPA-TDNN

# transformers WavLMModel names -> original unilm/s3prl names (the inverse of the loader's mapping,
# written out separately so the test does not check the mapping against itself)
_HF_TO_ORIG = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.2.1."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^masked_spec_embed$", "mask_emb"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$", "encoder.pos_conv.0.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$", "encoder.pos_conv.0.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.", "encoder.pos_conv.0."),
    (r"\.attention\.gru_rel_pos_linear\.", ".self_attn.grep_linear."),
    (r"\.attention\.gru_rel_pos_const$", ".self_attn.grep_a"),
    (r"\.attention\.rel_attn_embed\.", ".self_attn.relative_attention_bias."),
    (r"\.attention\.", ".self_attn."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"\.feed_forward\.intermediate_dense\.", ".fc1."),
    (r"\.feed_forward\.output_dense\.", ".fc2."),
]


def tiny_wavlm_config():
    from transformers import WavLMConfig

    return WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       conv_dim=(16,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True,
                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_buckets=32,
                       max_bucket_distance=80)


def wavlm_to_original_names(state: dict) -> dict:
    import re

    out = {}
    for name, value in state.items():
        for pattern, repl in _HF_TO_ORIG:
            name = re.sub(pattern, repl, name)
        out[name] = value
    return out


def make_tiny_wavlm_ecapa(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """(WavLM folder saved with transformers' save_pretrained, ECAPA checkpoint in UniSpeech's format
    `{"model": state_dict}`). The checkpoint's WavLM weights (`feature_extract.model.*`, original
    names) come from a second random WavLM, like the real fine-tuned checkpoint differs from
    microsoft/wavlm-large."""
    from transformers import WavLMModel

    wavlm_dir, ckpt = root / "wavlm", root / "wavlm_tiny_finetune.pth"
    torch.manual_seed(seed)
    WavLMModel(tiny_wavlm_config()).save_pretrained(wavlm_dir)
    (wavlm_dir / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "feature_size": 1, "sampling_rate": 16000, "padding_value": 0.0,
         "return_attention_mask": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor"}))
    finetuned = WavLMModel(tiny_wavlm_config())  # another draw: the "fine-tuned" weights
    head = EcapaHead(n_feats=3, feat_dim=32, channels=16, last_channels=24, emb_dim=8, scale=8,
                     se_bottleneck=4, attention_channels=8)
    _randomize_batchnorm(head)
    state = dict(head.state_dict())
    for name, value in wavlm_to_original_names(finetuned.state_dict()).items():
        state["feature_extract.model." + name] = value
    state["feature_extract.model.label_embs_concat"] = torch.randn(4, 8)  # pre-training only
    torch.save({"model": state}, ckpt)
    return wavlm_dir, ckpt
