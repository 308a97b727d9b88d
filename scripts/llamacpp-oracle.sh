#!/usr/bin/env bash
# llama.cpp itself as the oracle of `llmq export --format gguf`: every
# family's tiny fixture is exported at F32 and Q8_0, llama.cpp computes the
# logits of the reference token ids from the file, and they are compared
# with llmq's (modelio's TestGGUFLlamaCppOracle, which states the bars).
#
#   scripts/llamacpp-oracle.sh [WORKDIR]
#
# From a clean machine with Go, gcc, git and npm: llama.cpp comes from the
# npm package node-llama-cpp, which ships prebuilt CPU libraries
# (@node-llama-cpp/linux-x64: libllama, libggml and its CPU backends) and
# the llama.cpp source of the same release as a git bundle, whose headers
# compile scripts/llamacpp_logits.c against those libraries. Nothing of
# llama.cpp enters the repository; WORKDIR (default: a temporary folder)
# holds it all and can be reused by a later run.
set -euo pipefail
cd "$(dirname "$0")/.."

NLC_VERSION=3.21.1 # pinned: its prebuilt binaries and bundled source agree
W=${1:-$(mktemp -d)}
mkdir -p "$W"
W=$(cd "$W" && pwd)
echo "work folder: $W"

if [ ! -d "$W/node_modules/@node-llama-cpp/linux-x64" ]; then
	(cd "$W" && { [ -f package.json ] || npm init -y >/dev/null; } &&
		npm install --save-exact --ignore-scripts --no-audit --no-fund --omit=optional \
			"node-llama-cpp@$NLC_VERSION" "@node-llama-cpp/linux-x64@$NLC_VERSION" >/dev/null)
fi
LIB="$W/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
SRC="$W/llama.cpp"
if [ ! -d "$SRC" ]; then
	git clone -q "$W/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$SRC" 2>/dev/null
fi
echo "llama.cpp $(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$W/node_modules/node-llama-cpp/llama/llama.cpp.info.json") (node-llama-cpp $NLC_VERSION, source $(git -C "$SRC" rev-parse --short HEAD))"

# The libraries carry the release in their names (libllama.v0.4.0.so).
lib() { for f in "$LIB/$1".v*.so "$LIB/$1.so"; do [ -e "$f" ] && basename "$f" && return; done; echo "no $1 in $LIB" >&2; return 1; }
llama=$(lib libllama)
ggml=$(lib libggml)
gcc -O2 -std=c11 -Wall -I"$SRC/include" -I"$SRC/ggml/include" scripts/llamacpp_logits.c \
	-o "$W/llamacpp_logits" -L"$LIB" -l:"$llama" -l:"$ggml" -l:libggml-base.so -Wl,-rpath,"$LIB"

GGML_BACKEND_DIR="$LIB" LLMQ_LLAMACPP="$W/llamacpp_logits" \
	go test ./modelio/ -run 'TestGGUFLlamaCppOracle' -count=1 -v 2>&1 |
	sed 's/^ *gguf_llamacpp_test.go:[0-9]*: /    /'
exit "${PIPESTATUS[0]}"
