#!/usr/bin/env bash
# Create (or update) the project's environment: .venv at the repo root with everything the project needs.
# Idempotent: re-running with nothing changed does nothing. The Argilla server's own venv is created by
# `curate server up` (workspaces/server), on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=${PYTHON:-python3}
STAMP=$VENV/.curate-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip --disable-pip-version-check -q"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
echo "[setup] installing the project into $VENV (first run takes a few minutes)" >&2
$PIP install -U pip 2>&1 | quiet
# --- heavy runtime pieces (LLM / embeddings); see README 'Models' ---
# (filled in by the pipelines work)
# --- end heavy runtime pieces ---
$PIP install -e '.[dev]' 2>&1 | quiet
echo "$want" > "$STAMP"
echo "[setup] done" >&2
