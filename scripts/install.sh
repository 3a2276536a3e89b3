#!/bin/sh
# The one install procedure: `make setup` (and so `make serve`/`make test`) and the Dockerfile both run this
# script, so a developer's venv and the image's venv are built by the same commands.
#
#   scripts/install.sh [--editable] VENV [EXTRAS]
#
# Creates VENV with $PYTHON (default python3) if it has no python yet, upgrades pip, then installs the project
# (editable with --editable) with the optional EXTRAS (e.g. dev). When TORCH_INDEX_URL is set, torch is first
# installed alone from that index (e.g. the PyTorch CPU wheel index) at the version pyproject.toml pins, so
# the project install that follows finds the pin satisfied and does not fetch the multi-GB CUDA build.
set -eu

editable=""
if [ "${1:-}" = "--editable" ]; then
    editable="-e"
    shift
fi
venv="${1:?usage: scripts/install.sh [--editable] VENV [EXTRAS]}"
extras="${2:-}"
target="."
if [ -n "$extras" ]; then
    target=".[$extras]"
fi

test -x "$venv/bin/python" || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    torch_pin="$("$venv/bin/python" -c 'import tomllib; print(next(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] if d.startswith("torch==")))')"
    "$venv/bin/pip" install --quiet --index-url "$TORCH_INDEX_URL" "$torch_pin"
fi
# shellcheck disable=SC2086  # $editable is empty or one flag
"$venv/bin/pip" install --quiet $editable "$target"
