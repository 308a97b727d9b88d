#!/usr/bin/env bash
# Independent check of `llmq export --format compressed-tensors` on
# wiki-llama-25m, in two halves:
#
#   scripts/verify-compressed-tensors.sh prepare
#       (here, with Go) quantizes ../shared/models/wiki-llama-25m with the
#       w8a8 and gptq-w4a16 presets, exports both folders as
#       compressed-tensors, writes llmq's own logits and hidden states for a
#       fixed token sequence (tools/dumplogits: reference path, low-bit
#       kernels, and for W8A8 also without activation quantization, every
#       linear's input and output in the reference run, and the float64
#       forward pass, whose end-to-end logits can be barred where float32's
#       int8 rounding flips cannot), and packs exports + logits into
#       out/ct-verify/bundle.tar.xz (xz finds the embedding the two exports
#       share, so the bundle stays small enough to travel to a GPU machine,
#       which takes at most 64 MiB with the working tree).
#
#   scripts/verify-compressed-tensors.sh device OUTDIR
#       (on a machine with torch, safetensors and transformers; no Go, no
#       llmq code) unpacks the bundle and runs
#       scripts/verify_compressed_tensors.py on both exports, printing to
#       stdout and OUTDIR/compressed-tensors-verify.txt. Optional packages
#       are used when present: compressed_tensors (library dequantization
#       and transformers loading) and vllm (with VLLM=1, each export served
#       under a time limit of VLLM_TIMEOUT seconds, default 150).
#
#   scripts/verify-compressed-tensors.sh families-prepare
#   scripts/verify-compressed-tensors.sh families-device OUTDIR
#       the same for the tiny fixtures of the newer families (Llama 3, Qwen3,
#       Gemma 2, Phi-3, Mixtral, Qwen3-MoE), each quantized W8A8 and GPTQ
#       W4A16 with groups of 8 (128 divides none of their MLP widths), fed
#       48 fixed token ids (they have no tokenizer).
#
# The printed output of the device halves is kept in
# docs/compressed-tensors-verify.txt and docs/compressed-tensors-verify-families.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

W=out/ct-verify
FAMILIES=${FAMILIES:-tiny-llama3 tiny-qwen3 tiny-gemma2 tiny-phi3 tiny-mixtral tiny-qwen3moe}
case "${1:-}" in
prepare)
	SHARED=${LLMQ_SHARED:-../shared}
	rm -rf "$W"
	mkdir -p "$W"
	go build -o "$W/llmq" ./cmd/llmq
	go build -o "$W/dumplogits" ./tools/dumplogits
	"$W/llmq" quantize --model "$SHARED/models/wiki-llama-25m" --recipe w8a8 --out "$W/q-w8a8"
	"$W/llmq" quantize --model "$SHARED/models/wiki-llama-25m" --recipe gptq-w4a16 --out "$W/q-gptq-w4a16"
	mkdir -p "$W/bundle"
	for q in w8a8 gptq-w4a16; do
		"$W/llmq" export --model "$W/q-$q" --format compressed-tensors --out "$W/bundle/wiki-llama-25m-$q"
		rec=()
		if [ $q = w8a8 ]; then rec=(--record-linears); fi
		"$W/dumplogits" --model "$W/q-$q" --reference "${rec[@]}" --out "$W/bundle/logits-$q-reference.safetensors"
		# Hidden states only where the teacher-forced check reads them.
		"$W/dumplogits" --model "$W/q-$q" --no-hidden --out "$W/bundle/logits-$q-kernels.safetensors"
	done
	"$W/dumplogits" --model "$W/q-w8a8" --weights-only --no-hidden --out "$W/bundle/logits-w8a8-weightsonly.safetensors"
	# float64 logits for W8A8 only: they are 8.7 MB that barely compress
	# (with them the bundle is ~58 MiB of the 64 that may travel), and the
	# weight-only W4A16 path already meets its bar in float32.
	"$W/dumplogits" --model "$W/q-w8a8" --float64 --out "$W/bundle/logits-w8a8-float64.safetensors"
	# The two exports side by side, so that xz's 64 MiB window sees both
	# copies of the embedding; the tokenizer stays behind (the check feeds
	# token ids). lc=0,lp=3,pb=3 lets xz model the byte position within
	# 8-byte words, which suits arrays of floats (~2 MB smaller).
	(cd "$W/bundle" && tar -cf - --exclude=tokenizer.model wiki-llama-25m-w8a8 wiki-llama-25m-gptq-w4a16 logits-*.safetensors) |
		xz --lzma2=preset=9e,lc=0,lp=3,pb=3 -T2 >"$W/bundle.tar.xz"
	rm -rf "$W/bundle" "$W/q-w8a8" "$W/q-gptq-w4a16" "$W/llmq" "$W/dumplogits"
	ls -l "$W/bundle.tar.xz"
	;;
families-prepare)
	SHARED=${LLMQ_SHARED:-../shared}
	rm -rf "$W"
	mkdir -p "$W/bundle"
	go build -o "$W/llmq" ./cmd/llmq
	go build -o "$W/dumplogits" ./tools/dumplogits
	cat >"$W/gptq-w4a16-g8.yaml" <<'YAML'
quant_stage:
  quant_modifiers:
    GPTQModifier:
      targets: [Linear]
      ignore: [lm_head, 're:.*mlp\.gate$', 're:.*block_sparse_moe\.gate$']
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 8}
YAML
	ids=$(seq -s, 1 7 336)
	# Calibration rows of token ids (the fixtures have no tokenizer).
	for r in 0 1 2 3 4 5 6 7; do echo "{\"input_ids\": [$(seq -s, $((r * 3 + 2)) 11 511 | cut -d, -f1-40)]}"; done >"$W/calib.jsonl"
	for fam in $FAMILIES; do
		for q in w8a8 gptq-w4a16-g8; do
			r=$q
			[ $q = gptq-w4a16-g8 ] && r="$W/gptq-w4a16-g8.yaml"
			"$W/llmq" quantize --model "$SHARED/models/$fam" --recipe "$r" --calib-data "$W/calib.jsonl" --calib-samples 8 --calib-seqlen 32 --out "$W/q-$fam-$q"
			"$W/llmq" export --model "$W/q-$fam-$q" --format compressed-tensors --out "$W/bundle/$fam-$q"
			"$W/dumplogits" --model "$W/q-$fam-$q" --reference --ids "$ids" --out "$W/bundle/logits-$fam-$q-reference.safetensors"
			[ $q = w8a8 ] && "$W/dumplogits" --model "$W/q-$fam-$q" --weights-only --no-hidden --ids "$ids" --out "$W/bundle/logits-$fam-$q-weightsonly.safetensors"
		done
	done
	(cd "$W/bundle" && tar -cf - .) | xz -6 -T2 >"$W/bundle.tar.xz"
	rm -rf "$W/bundle" "$W"/q-* "$W/llmq" "$W/dumplogits"
	ls -l "$W/bundle.tar.xz"
	;;
families-device)
	OUTDIR=${2:?usage: $0 families-device OUTDIR}
	mkdir -p "$OUTDIR" /tmp/ct-verify
	python3 -c "import tarfile; tarfile.open('$W/bundle.tar.xz').extractall('/tmp/ct-verify')"
	B=/tmp/ct-verify
	{
		echo "# scripts/verify-compressed-tensors.sh families-device — $(date -u +%Y-%m-%dT%H:%MZ)"
		nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
		status=0
		for fam in $FAMILIES; do
			python3 scripts/verify_compressed_tensors.py --export "$B/$fam-gptq-w4a16-g8" \
				--logits "$B/logits-$fam-gptq-w4a16-g8-reference.safetensors" || status=1
			python3 scripts/verify_compressed_tensors.py --export "$B/$fam-w8a8" \
				--logits "$B/logits-$fam-w8a8-reference.safetensors" --logits "$B/logits-$fam-w8a8-weightsonly.safetensors" || status=1
		done
		echo "overall: $([ $status = 0 ] && echo OK || echo FAILED)"
	} 2>&1 | grep -v -e "^Warning" -e "warnings.warn" | tee "$OUTDIR/compressed-tensors-verify-families.txt"
	;;
device)
	OUTDIR=${2:?usage: $0 device OUTDIR}
	mkdir -p "$OUTDIR" /tmp/ct-verify
	python3 -c "import tarfile; tarfile.open('$W/bundle.tar.xz').extractall('/tmp/ct-verify')"
	B=/tmp/ct-verify
	{
		echo "# scripts/verify-compressed-tensors.sh device — $(date -u +%Y-%m-%dT%H:%MZ)"
		nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
		python3 - <<'PY'
import importlib.metadata as md
vs = []
for p in ["torch", "safetensors", "transformers", "compressed-tensors", "vllm"]:
    try:
        vs.append(f"{p} {md.version(p)}")
    except md.PackageNotFoundError:
        vs.append(f"{p} absent")
print("packages:", ", ".join(vs))
PY
		status=0
		python3 scripts/verify_compressed_tensors.py --export "$B/wiki-llama-25m-gptq-w4a16" \
			--logits "$B/logits-gptq-w4a16-reference.safetensors" --logits "$B/logits-gptq-w4a16-kernels.safetensors" || status=1
		python3 scripts/verify_compressed_tensors.py --export "$B/wiki-llama-25m-w8a8" \
			--logits "$B/logits-w8a8-reference.safetensors" --logits "$B/logits-w8a8-kernels.safetensors" \
			--logits "$B/logits-w8a8-weightsonly.safetensors" --logits "$B/logits-w8a8-float64.safetensors" || status=1
		echo "overall (steps 1-5): $([ $status = 0 ] && echo OK || echo FAILED)"
		if [ "${VLLM:-0}" = 1 ]; then
			for q in gptq-w4a16 w8a8; do
				timeout "${VLLM_TIMEOUT:-150}" python3 scripts/verify_compressed_tensors.py --vllm-only \
					--export "$B/wiki-llama-25m-$q" --logits "$B/logits-$q-reference.safetensors" ||
					echo "6. vllm check of $q: did not finish (exit $?)"
			done
		fi
	} 2>&1 | grep -v -e "^Warning" -e "warnings.warn" | tee "$OUTDIR/compressed-tensors-verify.txt"
	;;
*)
	echo "usage: $0 prepare | device OUTDIR" >&2
	exit 2
	;;
esac
