#!/bin/sh
# Builds {{name}}.wasm with jco componentize (npm: @bytecodealliance/jco@1.35.0). `-d all`
# leaves WASI out, so the component imports only Sluice's `log`.
set -eu
cd "$(dirname "$0")"
jco_home=${JCO_HOME:-$HOME/.cache/sluice/polyglot/npm}
if [ ! -f "$jco_home/node_modules/@bytecodealliance/jco/dist/jco.js" ]; then
    npm install --prefix "$jco_home" --no-audit --no-fund @bytecodealliance/jco@1.35.0
fi
# jco runs wasm-tools on its own WASI shim, which opens no directory unless told to.
preopen="$jco_home/preopen-scaffold.mjs"
find "$jco_home/node_modules" -path '*preview2-shim/dist/nodejs/filesystem.js' | awk '
    { printf "import { _setPreopens as p%d } from \"%s\";\np%d({ \"/\": \"/\" });\n", NR, $0, NR }' > "$preopen"
node --import "$preopen" "$jco_home/node_modules/@bytecodealliance/jco/dist/jco.js" \
    componentize plugin.js --wit wit -n transform -d all -o {{name}}.wasm
