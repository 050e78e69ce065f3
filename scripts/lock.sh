#!/usr/bin/env bash
# Re-freezes requirements/dev.txt from .venv. torch is written without its local "+cpu" label,
# which pip matches to the CPU wheel on this kind of machine.
set -euo pipefail
cd "$(dirname "$0")/.."
{
    echo "# The exact environment the project is developed and tested with (make install)."
    echo "# Regenerate with: make lock (after installing new versions into .venv)."
    .venv/bin/python -m pip freeze --exclude-editable --all \
        | grep -v -E '^(pip|labml-nn-bn)==' \
        | sed -E 's/^(torch==[^+]+)\+.*/\1/' \
        | sort -f
} > requirements/dev.txt.tmp
mv requirements/dev.txt.tmp requirements/dev.txt
