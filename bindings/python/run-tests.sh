#!/usr/bin/env bash
# Runs the Python binding tests (pytest), the guide's example.py among them, against the cdylib and a
# real possync-server. Installs pytest with pip when it is missing. Needs POSSYNC_FFI_LIB_DIR, POSSYNC_SERVER_BIN, POSSYNC_TLS_FRONT_BIN
# (possync-test-tls-front, for the TLS tests), DATABASE_URL (see scripts/bindings-test, which sets them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "python: ERROR: no $python on PATH" >&2; exit 1; }
if ! "$python" -c 'import pytest' 2>/dev/null; then
  echo "python: installing pytest" >&2
  "$python" -m pip install --quiet pytest >&2
fi
cd "$here"
exec "$python" -m pytest -q -p no:cacheprovider tests "$@"
