"""Seed-TTS-Eval evaluation: WER/CER with whisper and paraformer, speaker SIM, result folders.

Library entry point: `eval.run.evaluate(testset, wavs_dir, out_dir, config=EvalConfig(...) or
backends=Backends(...), transcripts=..., limit=..., utts=..., generation=..., generate_fn=...)`.
CLI: `python -m eval --help`. Protocol facts: docs/design.md section 7.
"""
