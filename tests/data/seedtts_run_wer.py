# Test reference only: Seed-TTS-Eval's English WER path, copied from its run_wer.py.
#
# Source:  https://github.com/BytedanceSpeech/seed-tts-eval, file run_wer.py,
#          commit 752f4297f090c46bb1a55a1f7439e5944ddefe8d (2024-06-14).
# License: the repository has no license file at that commit (its README states none); this
#          excerpt is kept only as the reference that tests/test_eval_seedtts_exact.py compares
#          VoxLab's own implementation against. It is not imported by VoxLab's code.
#
# Copied verbatim: the imports used, `punctuation_all`, `load_en_model`, `process_one`, and the lines
# of `run_asr`'s English branch (a loop body there, wrapped here in `transcribe_en`).
# Changed, and marked "CHANGED" below: `load_en_model` takes the model folder (the original names
# "openai/whisper-large-v3", a download); `lang` and `device` are set as run_wer.py sets them from
# its command line ("en"; "cpu" instead of "cuda:0").
# Added after the copy, marked "COMPAT" (not from seed-tts-eval): two bridges to the libraries
# installed here, each doing what the library version of 2024 did:
# - jiwer 4 removed `compute_measures`; jiwer 3's was `process_words` with its default transforms,
#   returned as a dict;
# - transformers 5 refuses `generate(..., forced_decoder_ids=...)`; transformers 4 put the argument
#   into the generation config, whose legacy `forced_decoder_ids` handling transformers 5 still has.
import string

import scipy
import soundfile as sf
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from zhon.hanzi import punctuation

try:
    from jiwer import compute_measures
except ImportError:  # COMPAT: jiwer >= 4
    compute_measures = None

punctuation_all = punctuation + string.punctuation

lang = "en"  # CHANGED: sys.argv[3] in run_wer.py
device = "cpu"  # CHANGED: "cuda:0" in run_wer.py


def load_en_model(model_id):  # CHANGED: model_id = "openai/whisper-large-v3" in run_wer.py
    processor = WhisperProcessor.from_pretrained(model_id)
    model = WhisperForConditionalGeneration.from_pretrained(model_id).to(device)
    return processor, model


def process_one(hypo, truth):
    raw_truth = truth
    raw_hypo = hypo

    for x in punctuation_all:
        if x == '\'':
            continue
        truth = truth.replace(x, '')
        hypo = hypo.replace(x, '')

    truth = truth.replace('  ', ' ')
    hypo = hypo.replace('  ', ' ')

    if lang == "zh":
        truth = " ".join([x for x in truth])
        hypo = " ".join([x for x in hypo])
    elif lang == "en":
        truth = truth.lower()
        hypo = hypo.lower()
    else:
        raise NotImplementedError

    measures = compute_measures(truth, hypo)
    ref_list = truth.split(" ")
    wer = measures["wer"]
    subs = measures["substitutions"] / len(ref_list)
    dele = measures["deletions"] / len(ref_list)
    inse = measures["insertions"] / len(ref_list)
    return (raw_truth, raw_hypo, wer, subs, dele, inse)


def transcribe_en(processor, model, wav_res_path):  # the English branch of run_asr's loop
    wav, sr = sf.read(wav_res_path)
    if sr != 16000:
        wav = scipy.signal.resample(wav, int(len(wav) * 16000 / sr))
    input_features = processor(wav, sampling_rate=16000, return_tensors="pt").input_features
    input_features = input_features.to(device)
    forced_decoder_ids = processor.get_decoder_prompt_ids(language="english", task="transcribe")
    predicted_ids = model.generate(input_features, forced_decoder_ids=forced_decoder_ids)
    transcription = processor.batch_decode(predicted_ids, skip_special_tokens=True)[0]
    return transcription


# ---- COMPAT (not from seed-tts-eval) ---------------------------------------------------------------
if compute_measures is None:
    import jiwer

    def compute_measures(truth, hypothesis):
        out = jiwer.process_words(truth, hypothesis)
        return {"wer": out.wer, "mer": out.mer, "wil": out.wil, "wip": out.wip, "hits": out.hits,
                "substitutions": out.substitutions, "deletions": out.deletions, "insertions": out.insertions}


class LegacyGenerate:
    """Wraps the model so `generate(..., forced_decoder_ids=...)` works as under transformers 4."""

    def __init__(self, model):
        self.model = model

    def generate(self, input_features, forced_decoder_ids=None, **kwargs):
        config = self.model.generation_config
        before = getattr(config, "forced_decoder_ids", None)
        config.forced_decoder_ids = forced_decoder_ids
        try:
            return self.model.generate(input_features, **kwargs)
        finally:
            config.forced_decoder_ids = before
