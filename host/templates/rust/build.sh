#!/bin/sh
# Builds {{name}}.wasm, a WebAssembly component. wasm32-wasip2 makes a component directly;
# Rust's std then imports WASI, so run it with `--wasi` (pipeline.toml: grants.wasi = true).
set -eu
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
target_dir=${CARGO_TARGET_DIR:-target}
cp "$target_dir/wasm32-wasip2/release/{{crate}}.wasm" {{name}}.wasm
echo "built {{name}}.wasm"
