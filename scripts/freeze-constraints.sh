#!/usr/bin/env bash
# Rewrite constraints.txt from the current .venv (after a deliberate upgrade that the tests passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Versions tested together (CPU, Python 3.11). Used by scripts/setup.sh as pip constraints;"
  echo "# pyproject files keep ranges so GPU users get a CUDA torch. Regenerate: scripts/freeze-constraints.sh"
  .venv/bin/python -m pip freeze --exclude-editable | grep -v -E "^(plinth|-e |#)" | sed 's/+cpu//'
} > constraints.txt
