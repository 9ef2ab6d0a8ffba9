"""`python -m eval.analysis.probes --model PATH [--out DIR] [--sentences N] [--voices ID ...]`: the paper's
analysis section (hidden-state t-SNE and linear probes) on one trained model.

The utterance set: N new sentences from the corpus generators (`datamodules.corpus.sentences`, seeded,
so the set is the same on every run) spoken by each chosen voice with `datamodules.corpus.render`
(default: every training voice of the language). Each utterance is VAE-encoded, packed as a
zero-shot training item `[text, 101, patches, 102]` and run through the backbone once (teacher
forcing); the states at its audio positions are kept, at four locations (the paper's rows):

- LocEnc output: `feat_encoder(patch)`, before the projection to the LM width; sees its patch only;
- TSLM last hidden (pre-FSQ); FSQ output (the bottleneck); RALM last hidden.
The three LM locations also attend to the text prefix. A location the model lacks (no FSQ, no RALM:
`no_ralm_*`, `no_hres`) is reported as missing with the reason, never as a number.

Probes (logistic regression on standardised features, scikit-learn; accuracy, higher is better):
- `speaker_acc`: speaker from the utterance mean of the states, cross-validated with the sentences
  split into folds (GroupKFold), so every test utterance's sentence is unseen in training;
- `speaker_acc_frame`: the same per patch (each audio position on its own, at most --max-frames);
- `phone_acc_frame`: the phone spoken at the patch's centre (espeak-ng's own phone events,
  `datamodules.corpus.phones`) from the patch's state, tested on voices and sentences both unseen in training
  (3 x 3 folds): a speaker-independent content probe, the nearest to the paper's phone recognition.
  Both are held out because the LM states know the sentence (text prefix) and the time, and other
  voices speak a sentence's phones at about the same times: with the sentence seen, a probe reads
  the phone off (sentence, time) even in a random model. Sentence identity as the content probe
  fails the same way.
The frame probes use speech patches only (not silence), with phones spoken by two voices or more.
Chance levels are 1/voices and the most frequent phone's share. The same probes on the VAE latent
patches (the backbone's input) are reported as a reference; `--control` adds them on a random-weights
copy of the backbone, the baseline for every number. The paper's probes (SUPERB PR PER, ASR WER,
ASV EER, `eval/reference/seed_probing.csv`, lower is better) are shown beside ours for their ordering
only: different probes, data and model size.

Outputs in --out (default `analyses/<YYYYmmdd-HHMMSS>`): `analysis.md`, `analysis.json`,
`probing.csv` (one row per location, shaped like the paper's CSV) and `tsne_<location>.png` (two
panels: utterance means coloured by speaker and by sentence). Exit status: 0 written, 2 bad input.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import models
from datamodules.corpus.phones import SILENCE, patch_labels, phone_segments
from datamodules.corpus.sentences import sentence
from datamodules.corpus.voices import VOICE_BY_ID, render, voices
from models.packing import collate_packed, pack_utterance
from models.tts import TTSModel
from models.voxcpm import VoxCPMBackbone
from voxlab.text import UNK_ID

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "seed_probing.csv"
# (key, the paper's row name in seed_probing.csv)
LOCATIONS = [("locenc", "LocEnc output"), ("tslm", "TSLM last hidden (pre-FSQ)"),
             ("fsq", "FSQ output"), ("ralm", "RALM last hidden")]
PROBES = [("speaker_acc", "speaker acc (utt) ↑"), ("speaker_acc_frame", "speaker acc (frame) ↑"),
          ("phone_acc_frame", "phone acc (frame) ↑")]
PAPER = [("pr_per", "paper PR PER ↓"), ("asr_wer", "paper ASR WER ↓"), ("asv_eer", "paper ASV EER ↓")]
MISSING = "—"


class AnalysisError(ValueError):
    """Bad input (model, voices, sizes); the message says what to change."""


@dataclass
class Utterance:
    text: str
    sentence: int       # index into the sentence list
    speaker: str
    wav: np.ndarray     # float32 mono at 16 kHz
    phones: list = field(default_factory=list)  # [(start s, end s, phone)] in `wav`


# ---- the utterance set -------------------------------------------------------------------------
def pick_sentences(n: int, lang: str = "en", seed: int = 0) -> list[str]:
    """n distinct generated sentences (a str seed hashes stably, so the set never changes)."""
    rng, out = random.Random(f"voxlab-analysis:{seed}:{lang}"), []
    for _ in range(100 * n):
        s = sentence(lang, rng)
        if s not in out:
            out.append(s)
        if len(out) == n:
            return out
    raise AnalysisError(f"could not draw {n} distinct {lang} sentences")


def default_voices(lang: str) -> list[str]:
    return [v.speaker for v in voices(lang, held_out=False)]


def build_set(texts: list[str], voices: list[str], lang: str) -> list[Utterance]:
    """Every sentence by every voice (rendered by espeak-ng, deterministic)."""
    for v in voices:
        if v not in VOICE_BY_ID:
            raise AnalysisError(f"unknown voice {v!r}; known: {', '.join(sorted(VOICE_BY_ID))}")
        if VOICE_BY_ID[v].lang != lang:
            raise AnalysisError(f"voice {v!r} speaks {VOICE_BY_ID[v].lang!r}, not --lang {lang!r}")
    return [Utterance(t, i, v, render(t, lang, v), phone_segments(t, lang, v))
            for i, t in enumerate(texts) for v in voices]


# ---- hidden states -----------------------------------------------------------------------------
def missing_locations(backbone) -> dict[str, str]:
    out = {}
    if backbone.fsq_layer is None:
        out["fsq"] = "no FSQ bottleneck in this model (fsq.enabled=false): the TSLM hidden goes on unchanged"
    if backbone.residual_lm is None:
        out["ralm"] = ("no RALM in this model (residual_lm_layers=0, or condition_on_residual=false "
                       "which builds none)")
    return out


@torch.inference_mode()
def extract_states(model, utts: list[Utterance], batch_size: int = 8) -> dict[str, list[np.ndarray]]:
    """location -> one [patches, H] float32 array per utterance (its audio positions); `input` holds
    the VAE latent patches themselves (flattened), the reference for what enters the backbone."""
    bb, vae, tok = model.backbone, model.vae, model.tokenizer
    device, dtype = next(bb.parameters()).device, next(bb.parameters()).dtype
    skip = missing_locations(bb)
    states: dict[str, list[np.ndarray]] = {k: [] for k, _ in [("input", "")] + LOCATIONS if k not in skip}
    for start in range(0, len(utts), batch_size):
        group = utts[start:start + batch_size]
        # The VAE is causal: right zero-padding leaves each utterance's own frames unchanged.
        longest = max(len(u.wav) for u in group)
        wav = torch.zeros(len(group), 1, longest)
        for i, u in enumerate(group):
            wav[i, 0, :len(u.wav)] = torch.from_numpy(u.wav)
        mu = vae.encode(wav.to(next(vae.parameters()).device)).float().cpu()
        ids = [tok.encode(u.text) for u in group]
        if max(max(i) for i in ids) >= bb.base_lm.config.vocab_size:
            raise AnalysisError(f"the tokenizer gives ids up to {max(max(i) for i in ids)} but the backbone's "
                                f"vocabulary has {bb.base_lm.config.vocab_size}: tokenizer and model do not match")
        items = [pack_utterance(ids[i], mu[i, :, :-(-len(u.wav) // vae.hop_length)].t(),
                                patch_size=bb.patch_size, audio_start_id=bb.audio_start_id,
                                audio_end_id=bb.audio_end_id) for i, u in enumerate(group)]
        batch = {k: v.to(device) for k, v in collate_packed(items).items()}
        batch["audio_feats"] = batch["audio_feats"].to(dtype)
        hidden = bb.hidden_states(batch)
        mask = batch["audio_mask"]
        patches = batch["audio_feats"][mask]
        found = {"input": patches.flatten(1), "locenc": bb.feat_encoder(patches), "tslm": hidden["tslm"][mask],
                 "fsq": hidden["bottleneck"][mask]}
        if "ralm" in hidden:
            found["ralm"] = hidden["ralm"][mask]
        counts = mask.sum(1).tolist()
        for key in states:
            states[key] += np.split(found[key].float().cpu().numpy(), np.cumsum(counts)[:-1])
    return states


# ---- probes ------------------------------------------------------------------------------------
# C=0.1, tol 1e-3: the probes have more weights than training samples; firmer L2 and a looser
# tolerance make newton-cg converge in seconds (C=1 at the default tol, or lbfgs: minutes per frame probe).
C = 0.1


def _classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="newton-cg", tol=1e-3, max_iter=200))


def group_folds(groups, k: int | None = None) -> np.ndarray:
    """A fold id per sample: the sorted distinct groups dealt round-robin into k folds (k = the
    number of groups when None), so a group never spans two folds."""
    groups = np.asarray(groups)
    names = sorted(set(groups.tolist()))
    k = min(k or len(names), len(names))
    fold_of = {g: i % k for i, g in enumerate(names)}
    return np.array([fold_of[g] for g in groups.tolist()])


def probe_accuracy(x: np.ndarray, labels, groups, n_splits: int | None = None, groups2=None,
                   n_splits2: int | None = None) -> float | None:
    """Held-out accuracy of a linear probe predicting `labels` from `x` [N, H], every sample tested
    once. Folds never split a group: a test sample's group is unseen in training (k folds of groups,
    one group per fold when n_splits is None). With `groups2` too, a test sample's groups in both
    are unseen: fold (a, b) tests groups-fold a x groups2-fold b and trains on the samples in
    neither (samples in only one of them sit that fold out). None when fewer than two folds."""
    labels = np.asarray(labels)
    fa = group_folds(groups, n_splits)
    fb = group_folds(groups2, n_splits2) if groups2 is not None else np.zeros(len(labels), dtype=int)
    if fa.max() < 1 or (groups2 is not None and fb.max() < 1) or len(np.unique(labels)) < 2:
        return None
    correct = 0
    for a in range(fa.max() + 1):
        for b in range(fb.max() + 1):
            test = (fa == a) & (fb == b)
            train = (fa != a) & (fb != b) if groups2 is not None else fa != a
            if not test.any():
                continue
            seen = np.unique(labels[train])
            if len(seen) < 2:  # one class left: it is the only possible answer
                correct += int((labels[test] == seen[0]).sum()) if len(seen) else 0
                continue
            # one BLAS thread: these small problems gain nothing from more, and lose a lot on a busy machine
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.filterwarnings("ignore", message="The number of unique classes")  # small folds
                clf = _classifier().fit(x[train], labels[train])
            correct += int((clf.predict(x[test]) == labels[test]).sum())
    return correct / len(labels)


@dataclass
class Frames:
    """The patches the frame-level probes use, as indices into the concatenated patches."""
    index: np.ndarray
    speaker: np.ndarray
    sentence: np.ndarray
    phone: np.ndarray
    total: int          # audio patches in all (silence included)


def select_frames(utts: list[Utterance], counts: list[int], patch_seconds: float, max_frames: int = 4000,
                  seed: int = 0) -> Frames:
    """Speech patches (the phone at the patch centre is not silence) whose phone is spoken by at
    least two voices (so a held-out voice's phones were seen in training); at most max_frames of
    them, a fixed random subset. The same patches serve every location."""
    labels = [patch_labels(u.phones, n, patch_seconds) for u, n in zip(utts, counts)]
    phone = np.array([p for ls in labels for p in ls], dtype=object)
    speaker = np.repeat([u.speaker for u in utts], counts)
    sentence = np.repeat([u.sentence for u in utts], counts)
    voices_of: dict[str, set] = {}
    for p, v in zip(phone, speaker):
        voices_of.setdefault(p, set()).add(v)
    index = np.array([i for i, p in enumerate(phone) if p != SILENCE and len(voices_of[p]) >= 2], dtype=int)
    if len(index) > max_frames:
        index = np.sort(np.random.default_rng(seed).choice(index, max_frames, replace=False))
    return Frames(index, speaker[index], sentence[index], phone[index].astype(str), int(sum(counts)))


def run_probes(per_utt: list[np.ndarray], utts: list[Utterance], frames: Frames) -> dict[str, float | None]:
    pooled = np.stack([s.mean(0) for s in per_utt])
    x = np.concatenate(per_utt)[frames.index]
    speakers, sentences = [u.speaker for u in utts], [u.sentence for u in utts]
    return {"speaker_acc": probe_accuracy(pooled, speakers, sentences, n_splits=5),
            "speaker_acc_frame": probe_accuracy(x, frames.speaker, frames.sentence, n_splits=5),
            # unseen voice and unseen sentence: LM states know the sentence (text prefix) and the time,
            # and other voices speak a sentence's phones at about the same times
            "phone_acc_frame": probe_accuracy(x, frames.phone, frames.speaker, 3, frames.sentence, 3)}


# ---- t-SNE -------------------------------------------------------------------------------------
def embed_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    if x.shape[1] > 50 and x.shape[0] > 50:  # the usual PCA step before t-SNE
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def tsne_figure(xy: np.ndarray, utts: list[Utterance], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, attr, name in ((axes[0], "speaker", "speaker"), (axes[1], "sentence", "sentence")):
        values = sorted({getattr(u, attr) for u in utts})
        cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
        for i, v in enumerate(values):
            sel = [j for j, u in enumerate(utts) if getattr(u, attr) == v]
            ax.scatter(xy[sel, 0], xy[sel, 1], s=28, color=cmap(i % cmap.N),
                       label=v if attr == "speaker" else f"s{v}")
        ax.set_title(f"coloured by {name}")
        ax.set_xticks([]), ax.set_yticks([])
        if len(values) <= 20:
            ax.legend(fontsize=7, loc="best", ncol=1 if len(values) <= 10 else 2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the whole analysis ------------------------------------------------------------------------
def read_paper() -> dict[str, dict[str, float]]:
    with open(REFERENCE, newline="", encoding="utf-8") as f:
        return {row["hidden_state"]: {k: float(row[k]) for k, _ in PAPER} for row in csv.DictReader(f)}


def random_control(model, seed: int = 0):
    """The same architecture with freshly initialised (untrained) backbone weights; the VAE and the
    tokenizer stay: what the probes find here comes from the inputs and the architecture alone."""
    torch.manual_seed(seed)
    bb = VoxCPMBackbone(**model.backbone.config).to(next(model.backbone.parameters()).device)
    return TTSModel(bb, model.vae, model.tokenizer).eval()


def probe_rows(states: dict, backbone, utts: list[Utterance], frames: Frames, out: Path | None, title: str,
               seed: int = 0, log=print) -> list[dict]:
    """One row per location (the paper's order) with the probes, and t-SNE figures written into
    `out` when given; a location the backbone lacks keeps its reason and no numbers."""
    missing, paper, rows = missing_locations(backbone), read_paper(), []
    for key, name in LOCATIONS:
        row = {"location": key, "hidden_state": name, "missing": missing.get(key),
               **{k: None for k, _ in PROBES}, "figure": None, "dim": None, "paper": paper.get(name, {})}
        if key in states:
            log(f"  {name}: probes" + (" and t-SNE" if out else ""))
            row.update(run_probes(states[key], utts, frames))
            row["dim"] = int(states[key][0].shape[1])
            if out is not None:
                row["figure"] = f"tsne_{key}.png"
                pooled = np.stack([x.mean(0) for x in states[key]])
                label = f"speaker acc {_fmt(row['speaker_acc'])}, phone acc {_fmt(row['phone_acc_frame'])}"
                tsne_figure(embed_2d(pooled, seed), utts, f"{title}: {name}   ({label})", out / row["figure"])
        rows.append(row)
    return rows


def analyze(model, out: str | Path, texts: list[str], voices: list[str], lang: str = "en",
            model_name: str = "model", seed: int = 0, max_frames: int = 4000, batch_size: int = 8,
            control: bool = False, log=print) -> dict:
    """Run everything and write the outputs into `out`; returns what analysis.json holds.
    `control`: also probe a random-weights copy of the backbone (`random_control`)."""
    if len(texts) < 2 or len(voices) < 2:
        raise AnalysisError(f"need at least 2 sentences and 2 voices (got {len(texts)} and {len(voices)}): "
                            "the probes hold sentences out for the speaker probe and voices for the phone probe")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    utts = build_set(texts, voices, lang)
    unknown = []
    if getattr(model.tokenizer, "kind", None) == "char":  # one id per character
        unknown = sorted({c for t in texts for c, i in zip(t, model.tokenizer.encode(t)) if i == UNK_ID})
    log(f"analysis: {len(texts)} sentences x {len(voices)} voices = {len(utts)} utterances")
    states = extract_states(model, utts, batch_size=batch_size)
    patch_seconds = model.backbone.patch_size * model.vae.hop_length / model.vae.sample_rate
    frames = select_frames(utts, [len(x) for x in states["input"]], patch_seconds, max_frames, seed)
    title = "/".join(Path(model_name).parts[-3:]) or model_name
    rows = probe_rows(states, model.backbone, utts, frames, out, title, seed, log)
    input_probes = run_probes(states["input"], utts, frames)
    control_rows = None
    if control:
        log("random-weights control:")
        ctrl = random_control(model, seed)
        control_rows = probe_rows(extract_states(ctrl, utts, batch_size), ctrl.backbone, utts, frames, None,
                                  "control", seed, log)
    phone_counts = np.unique(frames.phone, return_counts=True)[1]
    result = {
        "model": model_name, "lang": lang, "seed": seed, "voices": voices, "sentences": texts,
        "utterances": len(utts), "patches": frames.total, "probed_patches": int(len(frames.index)),
        "phones": int(len(phone_counts)),
        "chance": {"speaker": 1 / len(voices),  # phone: the most frequent phone's share
                   "phone": float(phone_counts.max() / len(frames.phone)) if len(frames.phone) else None},
        "fsq": model.backbone.config.get("fsq", {}),
        "residual_lm_layers": model.backbone.config.get("residual_lm_layers"), "unknown_chars": unknown,
        "rows": rows, "input": input_probes, "control_rows": control_rows, "seconds": round(time.time() - t0, 1),
    }
    write_outputs(out, result)
    log(f"analysis written to {out / 'analysis.md'} ({result['seconds']} s)")
    return result


def _fmt(v) -> str:
    return MISSING if v is None else f"{v:.3f}"


def _table(rows: list[dict], paper: bool = True) -> list[str]:
    heads = [h for _, h in PROBES] + ([h for _, h in PAPER] if paper else [])
    lines = ["| Hidden state | " + " | ".join(heads) + " |", "|---" * (1 + len(heads)) + "|"]
    for r in rows:
        cells = [_fmt(r[k]) for k, _ in PROBES]
        if paper:
            cells += [f"{r['paper'][k]:.2f}" if k in r["paper"] else MISSING for k, _ in PAPER]
        lines.append(f"| {r['hidden_state']} | " + " | ".join(cells) + " |")
    return lines


def write_outputs(out: Path, result: dict) -> None:
    (out / "analysis.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(out / "probing.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["hidden_state"] + [k for k, _ in PROBES] + [f"paper_{k}" for k, _ in PAPER])
        for r in result["rows"]:
            w.writerow([r["hidden_state"]] + ["" if r[k] is None else f"{r[k]:.4f}" for k, _ in PROBES]
                       + [r["paper"].get(k, "") for k, _ in PAPER])
    ch = result["chance"]
    lines = [f"# Hidden-state analysis: {result['model']}", "",
             f"{result['utterances']} utterances ({len(result['sentences'])} {result['lang']} sentences x "
             f"{len(result['voices'])} voices: {', '.join(result['voices'])}), {result['patches']} audio patches, "
             f"of which {result['probed_patches']} speech patches ({result['phones']} phones) feed the frame probes; "
             f"seed {result['seed']}.", "", *_table(result["rows"]),
             "", f"Chance: speaker {ch['speaker']:.3f}, phone {_fmt(ch['phone'])} (most frequent phone). Ours: "
             "linear probes (standardised logistic regression), held-out accuracy, higher is better: speaker "
             "probes are tested on sentences unseen in training, the phone probe (espeak-ng's phone at each "
             "patch's centre) on voices and sentences both unseen in training. The paper's columns are SUPERB "
             "probes (PR PER, ASR WER, ASV EER; lower is better) of VoxCPM-0.5B: other probes, data and scale, "
             "so compare orderings, not values.", "",
             "Reference, the same probes on the VAE latent patches (the backbone's input): "
             + ", ".join(f"{h[:-2]} {_fmt(result['input'][k])}" for k, h in PROBES) + ".", ""]
    if result.get("control_rows"):
        lines += ["## Random-weights control", "", "The same architecture with untrained backbone weights (the "
                  "model's VAE and tokenizer): what the probes find here comes from the inputs alone.", "",
                  *_table(result["control_rows"], paper=False), ""]
    notes = [f"- {r['hidden_state']}: missing: {r['missing']}" for r in result["rows"] if r["missing"]]
    if result["fsq"].get("enabled") and not result["fsq"].get("quantize", True):
        notes.append("- FSQ output: a projection bottleneck without rounding (fsq.quantize=false)")
    if result["unknown_chars"]:
        notes.append("- characters unknown to the model's tokenizer (read as <unk>): "
                     + "".join(result["unknown_chars"]))
    if notes:
        lines += ["Notes:", *notes, ""]
    lines += ["## t-SNE (utterance means)", ""]
    lines += [f"![{r['hidden_state']}]({r['figure']})" for r in result["rows"] if r["figure"]]
    lines += ["", "## Sentences", ""] + [f"- s{i}: {t}" for i, t in enumerate(result["sentences"])]
    (out / "analysis.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.analysis.probes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint, run folder, or exported / official model folder")
    p.add_argument("--out", help="output folder (default analyses/<YYYYmmdd-HHMMSS>)")
    p.add_argument("--sentences", type=int, default=10, help="number of sentences (default 10)")
    p.add_argument("--voices", nargs="+", help="voice ids (default: the language's training voices)")
    p.add_argument("--lang", default="en", choices=["en", "zh"])
    p.add_argument("--seed", type=int, default=0, help="sentence draw, t-SNE and frame subset")
    p.add_argument("--max-frames", type=int, default=4000, help="patches used by the frame-level probe")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--control", action="store_true",
                   help="also probe a random-weights copy of the backbone (a baseline for every number)")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = models.load(args.model, device=args.device, optimize=False)
        out = Path(args.out or f"analyses/{datetime.now():%Y%m%d-%H%M%S}")
        voices = args.voices or default_voices(args.lang)
        analyze(model, out, pick_sentences(args.sentences, args.lang, args.seed), voices, args.lang,
                model_name=str(args.model), seed=args.seed, max_frames=args.max_frames, batch_size=args.batch_size,
                control=args.control)
    except (AnalysisError, ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
