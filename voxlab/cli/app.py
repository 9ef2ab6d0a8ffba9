"""`make app MODEL=... [MODEL_B=...] [PORT=7860]`: a web app (Gradio) to listen to checkpoints.

    python -m voxlab.cli.app --model MODEL [--model-b MODEL_B] [--port 7860] [--testset META ...] [--runs DIR ...]

Three tabs:
- Synthesise: zero-shot TTS or voice cloning with MODEL (a prompt uploaded, or picked from a test set).
- A/B: MODEL and MODEL_B on the same text, prompt, settings and seed, side by side.
- Runs: an evaluation folder's results (its summary.md) and its generated utterances as players beside
  the ground truth and the prompt.
Generation goes through the package API (`models.load(...).generate`, inputs checked as `make synth`
checks them). Settings: cfg, steps, temperature, seed, length cap. Errors are shown in the page as one
line; no traceback reaches the page.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline machine: no telemetry calls

import numpy as np

from eval.testset import read_testset, testset_name
import models
from models.tts import TextWarning
from models.tts_io import ModelPathError
from models.weights import WeightsError
from voxlab.cli.synth import check_inputs

DEFAULT_TESTSETS = ("data/corpus/seedtts/en/meta.lst", "data/corpus/seedtts/zh/meta.lst")
NO_PROMPT = "(none: zero-shot)"


class ModelCache:
    """Each model loads once, on first use (a page may switch back and forth between two)."""

    def __init__(self, device: str | None = None):
        self.device, self._models = device, {}

    def get(self, path: str):
        if path not in self._models:
            self._models[path] = models.load(path, device=self.device)
        return self._models[path]


def synthesize(cache: ModelCache, model_path: str, text: str, prompt_wav: str | None, prompt_text: str | None,
               cfg: float, steps: int, temperature: float, seed: int, max_len: int):
    """-> ((sample rate, int16 samples), notes). Raises on bad input with a message naming it."""
    prompt_text = (prompt_text or "").strip() or None
    prompt_wav = prompt_wav or None
    check_inputs(text, prompt_wav, prompt_text)
    model = cache.get(model_path)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TextWarning)
        wav, sr = model.generate(text, prompt_wav=prompt_wav, prompt_text=prompt_text, cfg=float(cfg),
                                 timesteps=int(steps), temperature=float(temperature), seed=int(seed),
                                 max_len=int(max_len))
    seconds = time.perf_counter() - t0
    samples = (np.clip(wav.numpy().reshape(-1), -1.0, 1.0) * 32767).astype(np.int16)  # as `make synth` writes
    notes = [str(w.message) for w in caught if issubclass(w.category, TextWarning)]
    duration = len(samples) / sr
    notes.insert(0, f"{Path(model_path).name}: {duration:.2f} s of audio in {seconds:.2f} s "
                    f"(real-time factor {seconds / max(duration, 1e-9):.2f})")
    return (sr, samples), notes


def error_text(err: BaseException) -> str:
    """One line for the page: the error's own message (they name the file, key or value)."""
    message = " ".join(str(err).split()) or type(err).__name__
    return f"**Error:** {message}"


def _status(notes: list[str]) -> str:
    return "\n".join(f"- {n}" for n in notes)


# ---- test-set prompts and evaluation folders -----------------------------------------------------

def read_prompts(testsets) -> dict[str, tuple[str, str]]:
    """"<set>/<utt>: <prompt text>" -> (prompt wav, prompt text), from the test sets that exist."""
    out = {}
    for meta in testsets:
        if Path(meta).is_file():
            for it in read_testset(meta):
                out.setdefault(f"{testset_name(meta)}/{it.utt}: {it.prompt_text}", (str(it.prompt_wav), it.prompt_text))
    return out


def find_results(roots) -> list[str]:
    """Evaluation folders (holding metrics.json) under the given roots, newest first."""
    found = [p.parent for root in roots if Path(root).is_dir() for p in Path(root).rglob("metrics.json")]
    return [str(p) for p in sorted(set(found), key=lambda p: -p.stat().st_mtime)]


def result_view(folder: str) -> tuple[str, list[str]]:
    """(summary markdown, utterance names) of an evaluation folder."""
    folder = Path(folder)
    summary = folder / "summary.md"
    text = summary.read_text(encoding="utf-8") if summary.is_file() else f"(no summary.md in {folder})"
    with (folder / "per_utt.csv").open(encoding="utf-8", newline="") as f:
        utts = [row["utt"] for row in csv.DictReader(f)]
    return text, utts


def utterance_view(folder: str, utt: str) -> tuple[str | None, str | None, str | None, str]:
    """(generated wav, ground-truth wav, prompt wav, markdown of the row) of one evaluated utterance."""
    folder = Path(folder)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    with (folder / "per_utt.csv").open(encoding="utf-8", newline="") as f:
        row = next((r for r in csv.DictReader(f) if r["utt"] == utt), None)
    if row is None:
        raise ValueError(f"{folder / 'per_utt.csv'}: no utterance {utt!r}")
    item = next((it for it in read_testset(metrics["testset"]["path"], utts=[utt])), None)
    wavs = Path(metrics.get("wavs_dir") or folder / "wavs")
    gen = wavs / f"{utt}.wav"
    facts = [f"**target:** {row['reference']}", f"**ASR:** {row.get('hypothesis') or '—'}"]
    facts += [f"**{k}:** {row[k]}" for k in ("wer", "sim", "mos", "duration_ratio") if row.get(k)]
    return (str(gen) if gen.is_file() else None,
            str(item.gt_wav) if item is not None and item.gt_wav is not None else None,
            str(item.prompt_wav) if item is not None else None, "  \n".join(facts))


# ---- the page ------------------------------------------------------------------------------------

def build_app(model: str, model_b: str | None = None, testsets=DEFAULT_TESTSETS, runs=("runs", "evals"),
              cache: ModelCache | None = None):
    import gradio as gr

    cache = cache or ModelCache()
    prompts = read_prompts(testsets)

    def settings_row():
        with gr.Row():
            cfg = gr.Slider(0.0, 5.0, value=2.0, step=0.1, label="cfg (guidance scale)")
            steps = gr.Slider(1, 50, value=10, step=1, label="steps (Euler)")
            temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="temperature")
            seed = gr.Number(value=0, precision=0, label="seed")
            max_len = gr.Number(value=600, precision=0, label="length cap (patches, 12.5 per second)")
        return [cfg, steps, temperature, seed, max_len]

    def prompt_inputs():
        with gr.Row():
            pick = gr.Dropdown([NO_PROMPT, *prompts], value=NO_PROMPT, label="prompt from a test set")
            audio = gr.Audio(type="filepath", label="prompt audio (upload or pick)", sources=["upload"])
            text = gr.Textbox(label="prompt transcript")

        def picked(choice):
            wav, words = prompts.get(choice, (None, ""))
            return wav, words
        pick.change(picked, pick, [audio, text])
        return [audio, text]

    def run_one(path, text, prompt_wav, prompt_text, *settings):
        try:
            audio, notes = synthesize(cache, path, text, prompt_wav, prompt_text, *settings)
            return audio, _status(notes)
        except Exception as err:  # noqa: BLE001 - every failure becomes a line in the page
            return None, error_text(err)

    with gr.Blocks(title="VoxLab") as app:
        gr.Markdown(f"# VoxLab\nModel A: `{model}`" + (f"  \nModel B: `{model_b}`" if model_b else ""))
        with gr.Tab("Synthesise"):
            text = gr.Textbox(label="text", lines=2, elem_id="tts-text")
            prompt = prompt_inputs()
            settings = settings_row()
            go = gr.Button("Synthesise", variant="primary", elem_id="tts-go")
            out = gr.Audio(label="generated", type="numpy", interactive=False, elem_id="tts-audio")
            status = gr.Markdown(elem_id="tts-status")
            go.click(lambda *a: run_one(model, *a), [text, *prompt, *settings], [out, status])

        with gr.Tab("A/B"):
            if not model_b:
                gr.Markdown("Start with a second model to compare: `make app MODEL=... MODEL_B=...`.")
            else:
                ab_text = gr.Textbox(label="text", lines=2, elem_id="ab-text")
                ab_prompt = prompt_inputs()
                ab_settings = settings_row()
                ab_go = gr.Button("Synthesise with both", variant="primary", elem_id="ab-go")
                with gr.Row():
                    out_a = gr.Audio(label=f"A: {Path(model).name}", type="numpy", interactive=False)
                    out_b = gr.Audio(label=f"B: {Path(model_b).name}", type="numpy", interactive=False)
                with gr.Row():
                    status_a, status_b = gr.Markdown(), gr.Markdown()

                def both(*args):
                    return (*run_one(model, *args), *run_one(model_b, *args))
                ab_go.click(both, [ab_text, *ab_prompt, *ab_settings], [out_a, status_a, out_b, status_b])

        with gr.Tab("Runs"):
            folders = find_results(runs)
            pick_run = gr.Dropdown(folders, value=None, label="evaluation folder (holding metrics.json)")
            summary = gr.Markdown("" if folders else f"No evaluation folder under {', '.join(runs)}.")
            pick_utt = gr.Dropdown([], label="utterance")
            with gr.Row():
                gen = gr.Audio(label="generated", type="filepath", interactive=False)
                truth = gr.Audio(label="ground truth", type="filepath", interactive=False)
                prompt_player = gr.Audio(label="prompt", type="filepath", interactive=False)
            facts = gr.Markdown()

            def show_run(folder):
                try:
                    text, utts = result_view(folder)
                    return text, gr.update(choices=utts, value=utts[0] if utts else None)
                except Exception as err:  # noqa: BLE001
                    return error_text(err), gr.update(choices=[], value=None)

            def show_utt(folder, utt):
                if not folder or not utt:
                    return None, None, None, ""
                try:
                    return utterance_view(folder, utt)
                except Exception as err:  # noqa: BLE001
                    return None, None, None, error_text(err)
            pick_run.change(show_run, pick_run, [summary, pick_utt])
            pick_utt.change(show_utt, [pick_run, pick_utt], [gen, truth, prompt_player, facts])
    return app


def theme():
    """System fonts: the default theme fetches web fonts, which an offline machine cannot."""
    import gradio as gr
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint, run folder, exported or official VoxCPM folder")
    p.add_argument("--model-b", default=None, help="a second model for the A/B tab")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves other machines too")
    p.add_argument("--testset", nargs="*", default=list(DEFAULT_TESTSETS), help="meta.lst files to pick prompts from")
    p.add_argument("--runs", nargs="*", default=["runs", "evals"], help="folders searched for evaluation results")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: where the weights load)")
    args = p.parse_args(argv)

    cache = ModelCache(args.device)
    for label, path in (("MODEL", args.model), ("MODEL_B", args.model_b)):
        if path is not None and not str(path).strip():
            print(f"error: {label} is empty: give a checkpoint, run folder, exported or official VoxCPM folder",
                  file=sys.stderr)
            return 2
        try:  # loaded before the page starts: a wrong path is a one-line error here, not in the page
            if path is not None:
                cache.get(path)
        except (ModelPathError, WeightsError, FileNotFoundError, ValueError) as err:
            print(f"error: {label}={path}: {err}", file=sys.stderr)
            return 2
    app = build_app(args.model, args.model_b, args.testset, args.runs, cache)
    print(f"[app] serving http://{args.host}:{args.port} (Ctrl+C stops)", flush=True)
    app.launch(server_name=args.host, server_port=args.port, theme=theme(), ssr_mode=False, show_error=False,
               quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
