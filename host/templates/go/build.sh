#!/bin/sh
# Builds {{name}}.wasm: Go (1.24 or later) compiles a WASI preview1 reactor module, and
# `host plugin componentize` makes it a component (the WIT world, the preview1 adapter).
# The Go runtime imports WASI and reads the clock as it starts, so run it with
# `--grant wasi,clocks` (pipeline.toml: grants.wasi = true, grants.clocks = true).
set -eu
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o {{name}}.core.wasm .
"${SLUICE_HOST:-host}" plugin componentize {{name}}.core.wasm -o {{name}}.wasm
rm {{name}}.core.wasm
echo "built {{name}}.wasm"
