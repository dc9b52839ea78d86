#!/usr/bin/env bash
# Compiles the generated Kotlin bindings, the tests and the samples with kotlinc and runs the tests on
# the desktop JVM against the cdylib (JNA). Installs what is missing (kotlinc from the npm package
# `kotlin-compiler` into bindings/kotlin/.tools, JNA from Debian's libjna-java); quiet when present.
#
# Needs: POSSYNC_FFI_LIB_DIR (folder of libpossync_ffi.so), POSSYNC_SERVER_BIN, POSSYNC_TLS_FRONT_BIN
# (possync-test-tls-front, for the TLS tests), DATABASE_URL (see scripts/bindings-test, which sets them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${POSSYNC_FFI_LIB_DIR:?set POSSYNC_FFI_LIB_DIR to the folder holding libpossync_ffi.so}"
: "${POSSYNC_SERVER_BIN:?set POSSYNC_SERVER_BIN to the possync-server binary}"
kotlin_version=2.4.20
tools="$here/.tools"
kotlinc="$tools/node_modules/kotlin-compiler/bin/kotlinc"
jna=/usr/share/java/jna.jar

command -v java >/dev/null || { echo "kotlin: ERROR: no java on PATH (install openjdk-17-jre-headless)" >&2; exit 1; }
if [ ! -x "$kotlinc" ] || ! grep -qx "$kotlin_version" "$tools/node_modules/kotlin-compiler/build.txt" 2>/dev/null; then
  command -v npm >/dev/null || { echo "kotlin: ERROR: npm is needed to install kotlinc (apt-get install npm)" >&2; exit 1; }
  echo "kotlin: installing kotlin-compiler@$kotlin_version into $tools" >&2
  npm install --prefix "$tools" --no-audit --no-fund --silent "kotlin-compiler@$kotlin_version" >&2
fi
if [ ! -f "$jna" ]; then
  echo "kotlin: installing libjna-java" >&2
  { apt-get install -y -q libjna-java || { apt-get update -q && apt-get install -y -q libjna-java; }; } >/dev/null
fi
stdlib="$tools/node_modules/kotlin-compiler/lib/kotlin-stdlib.jar"

build="$here/build"
rm -rf "$build" && mkdir -p "$build"
# One compiler run for the bindings, the tests and the samples (with their Android stubs): the samples
# must compile against the generated API, the tests must run.
"$kotlinc" -nowarn -cp "$jna" -d "$build/possync-kotlin.jar" \
  "$here/generated/app/possync/possync_ffi.kt" "$here"/tests/*.kt "$here"/samples/*.kt "$here"/samples/stubs/*.kt 2>&1 |
  grep -v '^warning: unable to find kotlin-stdlib.jar' >&2 || true
[ -f "$build/possync-kotlin.jar" ] || { echo "kotlin: ERROR: compilation failed" >&2; exit 1; }

java -Djna.library.path="$POSSYNC_FFI_LIB_DIR" -cp "$build/possync-kotlin.jar:$jna:$stdlib" app.possync.tests.BindingsTestKt
