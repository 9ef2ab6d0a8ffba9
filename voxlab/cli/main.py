"""`voxlab COMMAND [ARGS...]`: one console script for the commands the Makefile runs.

Each command is the same `main(argv)` its Makefile target runs (`voxlab train --help` is
`python -m voxlab.cli.train --help`); modules are imported only when their command is called.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module whose main(argv) runs it, one-line summary)
COMMANDS = {
    "data": ("datamodules.corpus.__main__", "build the embedded offline corpus and the mini test set"),
    "train": ("voxlab.cli.train", "train one experiment"),
    "sweep": ("voxlab.cli.sweep", "train every experiment of a sweep"),
    "cache": ("datamodules.tts", "encode the corpus into the latent cache"),
    "lm": ("voxlab.cli.lm", "pre-train the tiny text LM used for LM init"),
    "eval": ("eval.__main__", "Seed-TTS-Eval on a test set"),
    "report": ("eval.reporting.report", "Markdown + HTML report over run, sweep or eval folders"),
    "synth": ("voxlab.cli.synth", "zero-shot TTS / voice cloning"),
    "demo": ("voxlab.cli.demo", "the end-to-end CPU demo"),
    "analyze": ("eval.analysis.probes", "hidden-state t-SNE and linear probes"),
    "tiny-vae": ("voxlab.cli.tiny_vae", "re-train the shipped tiny AudioVAE"),
    "prepare": ("voxlab.cli.prepare", "a public corpus in its released layout -> manifests"),
    "app": ("voxlab.cli.app", "the web app: TTS, cloning, A/B of two checkpoints, run browser"),
    "average": ("voxlab.cli.average", "average the weights of a run's newest checkpoints into one"),
    "shards": ("voxlab.cli.shards", "a manifest -> tar shards (audio or latents) for streaming"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items())
    return f"usage: voxlab COMMAND [ARGS...]   (voxlab COMMAND --help for its options)\n\ncommands:\n{rows}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"voxlab: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv[0] = f"voxlab {name}"  # argparse's prog in --help and errors
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
