# VoxLab: `make help` lists the targets. Variables: EXP, SCALE, ARGS, RESUME, MODEL, TESTSET...
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
EXP ?=
SCALE ?= tiny
SWEEP ?=
MODEL ?=
MODEL_B ?=
CKPTS ?=
N ?= 5
PORT ?= 7860
TESTSET ?= $(DATA)/seedtts/en/meta.lst
RUNS ?= runs
TEXT ?=
PROMPT_WAV ?=
PROMPT_TEXT ?=
OUT ?=
ARGS ?=
RESUME ?=
DATA ?= data/corpus
DATASET ?=
SRC ?=
MANIFEST ?=
LORA ?=
VAL ?=

.PHONY: help install test test-slow data train sweep cache lm eval report synth bench demo analyze tiny-vae prepare shards app average finetune bench-finetune

help: ## list the targets
	@echo "VoxLab targets (variables in CAPS, e.g. make train EXP=d256s9 SCALE=tiny ARGS=\"optim.lr=1e-4\"):"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

install: ## create .venv with torch, the project (editable) and every extra; re-run is quick
	@bash scripts/install.sh

test: ## the fast CPU test suite (what CI runs)
	@$(PY) -m pytest -q --durations=15

test-slow: ## the slower checks (marked slow)
	@$(PY) -m pytest -q -m slow

data: ## build the embedded offline corpus + Seed-TTS-Eval mini test set in $(DATA)
	@$(PY) -m datamodules.corpus --out $(DATA)

train: ## train one experiment: EXP=name [SCALE=tiny|paper] [ARGS="k=v ..."] [RESUME=run folder or ckpt]
	@$(PY) -m voxlab.cli.train $(if $(EXP),--exp $(EXP)) --scale $(SCALE) $(if $(RESUME),--resume $(RESUME)) $(ARGS)

finetune: ## fine-tune a model (official folder or ours): MODEL=... MANIFEST=<jsonl, ours or official> [LORA=1] [VAL=<jsonl>] [ARGS="trainer.max_steps=..."]
	@$(PY) -m voxlab.cli.train --exp $(if $(LORA),finetune_lora,finetune_full) "init.model=$(MODEL)" "data.train_manifest=$(MANIFEST)" $(if $(VAL),"data.val_manifest=$(VAL)") $(ARGS)

sweep: ## train every experiment of a sweep: SWEEP=fsq|ralm|conditioning|lm_init|all|v1_to_v2 [SCALE=...] [SEEDS=3] [RECIPE=tiny-speaks]
	@$(PY) -m voxlab.cli.sweep --sweep $(SWEEP) --scale $(SCALE) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(RECIPE),--recipe $(RECIPE)) $(ARGS)

cache: ## encode the corpus into the latent cache with the experiment's VAE: [EXP=d256s9] [SCALE=...]
	@$(PY) -m datamodules.tts --exp $(or $(EXP),d256s9) --scale $(SCALE) $(ARGS)

lm: ## pre-train the tiny text LM used for LM init at tiny scale (saved as a Hugging Face folder)
	@$(PY) -m voxlab.cli.lm --exp $(or $(EXP),d256s9) --scale $(SCALE) $(ARGS)

eval: ## Seed-TTS-Eval: [MODEL=...] TESTSET=<meta.lst or folder> [ARGS="--wavs DIR --sim resemblyzer ..."]
	@$(PY) -m eval --testset $(TESTSET) $(if $(MODEL),--model $(MODEL)) $(ARGS)

report: ## Markdown + self-contained HTML report over RUNS="run folders, sweep folders or eval folders" [OUT=dir]
	@$(PY) -m eval.reporting.report --runs $(RUNS) $(if $(OUT),--out $(OUT))

synth: ## zero-shot TTS / voice cloning: MODEL=... TEXT=... OUT=x.wav [PROMPT_WAV=... PROMPT_TEXT=...] [ARGS="--cfg 2 --timesteps 10 --temperature 1 --seed 0 --max-len 600"]
	@$(PY) -m voxlab.cli.synth --model "$(MODEL)" --text "$(TEXT)" --out "$(or $(OUT),synth.wav)" $(if $(PROMPT_WAV),--prompt-wav "$(PROMPT_WAV)") $(if $(PROMPT_TEXT),--prompt-text "$(PROMPT_TEXT)") $(ARGS)

bench: ## beside the official (0.5B config, one run): fp32/bf16/int8 ratios at 1 and 2 threads, batched per-utterance time, streaming first chunk, per-module GB/s [ARGS="--patches 25 --repeats 5"]
	@$(PY) benchmarks/bench_inference.py $(ARGS)

bench-finetune: ## fine-tuning step at 0.5B on CPU beside the official: full, full + gradient checkpointing, LoRA; time and peak memory (~10 min, ~12 GB) [ARGS="--runs ours:lora official:lora --steps 2"]
	@$(PY) benchmarks/bench_finetune.py $(ARGS)

demo: ## data, shipped tiny VAE (ARGS=--train-vae trains it), latent cache, tiny d256s9, Seed-TTS-Eval on the mini test set beside the ground truth and the VAE resynthesis, report (CPU, ~20 min)
	@$(PY) -m voxlab.cli.demo $(ARGS)

analyze: ## hidden-state t-SNE and linear probes (the paper's analysis section): MODEL=... [ARGS="--sentences 12"]
	@$(PY) -m eval.analysis.probes --model "$(MODEL)" $(if $(OUT),--out $(OUT)) $(ARGS)

tiny-vae: ## re-train the tiny AudioVAE that the demo ships (assets/tiny_audiovae; the frame-rate iSTFT recipe, ~15 min on 2 cores) [ARGS=...]
	@$(PY) -m voxlab.cli.tiny_vae $(ARGS)

prepare: ## a public corpus as released -> manifests: DATASET=ljspeech|libritts_r|vctk|aishell3|emilia|wenetspeech4tts SRC=<corpus folder> [OUT=data/<name>] [ARGS=...]
	@$(PY) -m voxlab.cli.prepare --dataset "$(DATASET)" --src "$(SRC)" --out "$(or $(OUT),data/$(DATASET))" $(ARGS)

app: ## web app (Gradio): TTS, voice cloning, A/B of two checkpoints, run browser: MODEL=... [MODEL_B=...] [PORT=7860] [ARGS=...]
	@$(PY) -m voxlab.cli.app --model "$(MODEL)" $(if $(MODEL_B),--model-b "$(MODEL_B)") --port $(PORT) $(ARGS)

shards: ## a manifest -> tar shards for streaming: MANIFEST=<manifest> [OUT=folder] [ARGS="--target-mb 256 --workers 4 --vae PATH --dtype bfloat16"]
	@$(PY) -m voxlab.cli.shards --manifest "$(MANIFEST)" $(if $(OUT),--out "$(OUT)") $(ARGS)

average: ## average the weights of the newest N checkpoints of a run into one: CKPTS="run folder | a.ckpt b.ckpt ..." [N=5] [OUT=file]
	@$(PY) -m voxlab.cli.average $(CKPTS) --last $(N) $(if $(OUT),--out "$(OUT)")
