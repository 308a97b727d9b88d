"""Logits of the tiny-* fixtures as transformers computes them by default.

Runs on the GPU test machine (transformers 5.17): each model is loaded in
float64 with the eager attention (Gemma 2's soft cap is applied there, not
in SDPA) and run on the fixture's own input_ids; the logits are written to
OUT/<name>-logits.st (safetensors: input_ids int32 [B, T], logits float32
[B, T, vocab]), which model/testdata/eager holds.

    python3 scripts/transformers-eager-oracle.py MODELS_DIR OUT tiny-qwen3 ...
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

models, out = sys.argv[1], sys.argv[2]
for name in sys.argv[3:]:
    path = os.path.join(models, name)
    ids = load_file(os.path.join(path, "reference.safetensors"))["input_ids"]
    try:
        # Mixture-of-experts models: the per-expert loop (the grouped
        # matmul kernels have no float64).
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation="eager",
                                                 experts_implementation="eager").eval()
    except (TypeError, ValueError):
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = m(ids).logits
    save_file({"input_ids": ids.to(torch.int32).contiguous(), "logits": logits.float().contiguous()},
              os.path.join(out, name + "-logits.st"),
              metadata={"source": "transformers %s, eager, float64" % __import__("transformers").__version__})
    print(name, "done", flush=True)
