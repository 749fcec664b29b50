#!/usr/bin/env bash
# Install streamrank into ./.venv and fetch the Kafka broker's jars.
# Safe to run again: it only installs what is missing.
# Needs: Python >= 3.11, Java 17+ and Maven (for the broker jars).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON=$candidate
      break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "error: Python >= 3.11 not found; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
for tool in java mvn; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool not found on PATH; the local Kafka broker needs Java 17+ and Maven" >&2
    exit 1
  fi
done

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "installing streamrank and its dependencies (torch is large: the first install takes minutes)"
.venv/bin/python -m pip install --quiet --progress-bar off -e '.[test]'

echo "fetching the Kafka broker jars"
.venv/bin/python -c 'from streams.broker import ensure_jars; from streams.config import Settings; print(ensure_jars(Settings.from_env()))'
echo "installing Chromium for the browser tests"
./deploy/install-chromium.sh || echo "warning: Chromium could not be installed; the browser tests will skip" >&2
echo "installed: run .venv/bin/streamrank --help"
