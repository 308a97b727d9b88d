#!/bin/sh
# Re-runs every measurement quoted in docs/performance.md on this machine:
# the INT8 peak, the kernels on LLM-shaped problems, llmq bench of
# wiki-llama-25m W8A8 (per token and per tensor, with and without integer
# attention BMMs) and W4A16 against FP32, attention alone, and the synthetic-layer
# scaling sweep. Run it on an otherwise idle machine, from the repository
# root; output goes to stdout (about 10 minutes on 2 cores).
set -eu
SHARED=${LLMQ_SHARED:-../shared}
MODEL=$SHARED/models/wiki-llama-25m
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "## machine"
go version
grep -m1 'model name' /proc/cpuinfo || true
nproc
grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' '; echo

echo "## INT8 peak and kernels"
go test ./kernels -run - -bench 'Int8Peak' -benchtime 2s
go test ./kernels -run - -bench 'LLMShapes' -benchtime 10x

echo "## llmq bench: wiki-llama-25m"
go build -o "$TMP/llmq" ./cmd/llmq
for r in smoothquant-o1-lmhead gptq-w4a16-lmhead; do
  "$TMP/llmq" quantize --model "$MODEL" --recipe $r --out "$TMP/$r" >/dev/null 2>&1
  echo "### $r"
  "$TMP/llmq" bench --model "$TMP/$r" --base "$MODEL" --reps 7 2>/dev/null
done

echo "## W8A8 with per-tensor activations, and integer attention BMMs"
for r in smoothquant-o2 smoothquant-o3 smoothquant-o3-bmm; do
  "$TMP/llmq" quantize --model "$MODEL" --recipe $r --out "$TMP/$r" >/dev/null 2>&1
  echo "### $r vs FP32"
  "$TMP/llmq" bench --model "$TMP/$r" --base "$MODEL" --reps 7 2>/dev/null
done
echo "### smoothquant-o3-bmm vs smoothquant-o3"
"$TMP/llmq" bench --model "$TMP/smoothquant-o3-bmm" --base "$TMP/smoothquant-o3" --reps 9 2>/dev/null
go test ./nn -run - -bench Attention -benchtime 500x -count 3

echo "## synthetic layer scaling"
go test ./quant/methods -run - -bench SyntheticLayer -benchtime 10x
