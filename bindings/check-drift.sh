#!/usr/bin/env bash
# Fails when the committed bindings differ from what the current ffi/ code generates.
# Fix: run bindings/generate.sh and commit the result.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$root/bindings/generate.sh" "$tmp"
status=0
for f in kotlin/generated/app/possync/possync_ffi.kt swift/Sources/Possync/Possync.swift \
  swift/ffi/PossyncFFI.h swift/ffi/PossyncFFI.modulemap python/possync_ffi.py; do
  if [ ! -f "$root/bindings/$f" ]; then
    echo "check-drift: bindings/$f is missing" >&2
    status=1
  elif ! diff -u "$root/bindings/$f" "$tmp/$f" >"$tmp/diff" 2>&1; then
    echo "check-drift: bindings/$f differs from the generated file:" >&2
    head -40 "$tmp/diff" >&2
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "check-drift: FAILED: the committed bindings are stale; run bindings/generate.sh and commit" >&2
  exit 1
fi
echo "check-drift: bindings match ffi/ (kotlin, swift, python)"
