#!/usr/bin/env bash
# Regenerates the Kotlin, Swift and Python bindings from the possync-ffi cdylib (uniffi library mode).
#
#   bindings/generate.sh            # writes into bindings/ (commit the result)
#   bindings/generate.sh OUT_DIR    # writes the same layout under OUT_DIR (check-drift.sh uses this)
#
# Layout: kotlin/generated/app/possync/possync_ffi.kt, swift/Sources/Possync/Possync.swift,
# swift/ffi/{PossyncFFI.h,PossyncFFI.modulemap}, python/possync_ffi.py. Names come from ffi/uniffi.toml.
# Generated without formatters (--no-format), so the output is the same on every machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$root/bindings}" && cd "${1:-$root/bindings}" && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$(uname -s)" in Darwin) lib="libpossync_ffi.dylib" ;; *) lib="libpossync_ffi.so" ;; esac

# The generator first, then the cdylib, so the library left in target/ is the one built without `cli`.
cargo build --quiet -p possync-ffi --features cli --bin uniffi-bindgen
cargo build --quiet -p possync-ffi --lib

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for language in kotlin swift python; do
  "$target_dir/debug/uniffi-bindgen" generate --library "$target_dir/debug/$lib" \
    --language "$language" --out-dir "$tmp/$language" --no-format >/dev/null
done

mkdir -p "$out/kotlin/generated/app/possync" "$out/swift/Sources/Possync" "$out/swift/ffi" "$out/python"
cp "$tmp/kotlin/app/possync/possync_ffi.kt" "$out/kotlin/generated/app/possync/possync_ffi.kt"
cp "$tmp/swift/Possync.swift" "$out/swift/Sources/Possync/Possync.swift"
cp "$tmp/swift/PossyncFFI.h" "$tmp/swift/PossyncFFI.modulemap" "$out/swift/ffi/"
cp "$tmp/python/possync_ffi.py" "$out/python/possync_ffi.py"
