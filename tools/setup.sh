#!/usr/bin/env bash
# Creates .venv if missing and installs hqc into it; safe to re-run.
# torch==2.13.0 goes first: on machines with its CPU wheel on disk this avoids gigabytes of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test]"
