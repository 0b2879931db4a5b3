#!/bin/sh
# Builds {{name}}.wasm: clang compiles a WASI preview1 reactor module against wasi-libc
# (Debian: clang lld wasi-libc libclang-rt-14-dev-wasm32), and `host plugin componentize`
# makes it a component. It imports nothing from WASI, so it needs no grants.
set -eu
cd "$(dirname "$0")"
${CC:-clang} --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra \
    -o {{name}}.core.wasm plugin.c transform.c
"${SLUICE_HOST:-host}" plugin componentize {{name}}.core.wasm -o {{name}}.wasm
rm {{name}}.core.wasm
echo "built {{name}}.wasm"
