#!/bin/sh
# Builds {{name}}.wasm with componentize-py (pip install componentize-py==0.25.1). Python
# components always import WASI: run with `--wasi` (pipeline.toml: grants.wasi = true).
set -eu
cd "$(dirname "$0")"
cpy=${COMPONENTIZE_PY:-componentize-py}
if ! command -v "$cpy" >/dev/null 2>&1; then
    # where `cargo xtask plugins` of the Sluice repository installs it
    cpy="$HOME/.cache/sluice/polyglot/py/bin/componentize-py"
fi
"$cpy" -d wit -w transform componentize app -o {{name}}.wasm
