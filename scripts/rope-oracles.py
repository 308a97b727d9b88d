#!/usr/bin/env python3
"""Reference RoPE tables from Hugging Face transformers.

For every case below, a config.json is written to a temporary folder and read
back with AutoConfig (so the same conversions apply as for a real
checkpoint: legacy rope_scaling, top-level rope_theta, Phi-3's top-level
original_max_position_embeddings, Gemma 3's per-layer-type parameters), the
family's own RotaryEmbedding module is built from it, and its forward pass is
called for position ids pos0 … pos0+rows−1 — which is where transformers
updates dynamic and longrope frequencies (dynamic_rope_update). Recorded per
call: the inv_freq buffer the call used, the attention scaling, and cos/sin
(first half of the last dimension; transformers repeats it) at a few
positions.

"fresh" calls use a new module each (no history); "sequence" cases reuse one
module for several calls, as a KV-cached decode does. Cases with dtype
bfloat16 go through save_pretrained / from_pretrained(dtype=bfloat16) of a
one-layer model, so the inv_freq buffers are cast as they are for a real
half-precision checkpoint; their forward is called with a float32 x, so
cos/sin come back in float32.

Usage: python3 scripts/rope-oracles.py OUTDIR
writes OUTDIR/rope-oracles.json (what model/testdata holds: positions cut to
the first and last of each call, cos/sin to 8 decimals — see trim) and
OUTDIR/src/, the transformers sources the numbers come from, for reading.
It needs torch and transformers (5.17 for the committed file) and the
tiny-llama3, tiny-gemma3 and tiny-phi3 config.json files, read from
$LLMQ_SHARED/models/ (default ../shared beside the repository) or from
configs/<name>.json beside this script. Runs on CPU; cases marked gpu are
repeated on CUDA when present and the largest difference is recorded.

python3 scripts/rope-oracles.py --trim FULL.json OUT.json trims an untrimmed
file (one written before trimming was part of the script) the same way.
"""

import copy
import importlib
import inspect
import json
import math
import os
import struct
import sys
import tempfile
import traceback

try:
    import torch
    import transformers
    from transformers import AutoConfig
except ImportError:  # --trim needs neither
    torch = transformers = AutoConfig = None

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("LLMQ_SHARED") or os.path.join(os.path.dirname(HERE), "..", "shared")

ROTARY = {
    "llama": ("transformers.models.llama.modeling_llama", "LlamaRotaryEmbedding"),
    "mistral": ("transformers.models.mistral.modeling_mistral", "MistralRotaryEmbedding"),
    "qwen2": ("transformers.models.qwen2.modeling_qwen2", "Qwen2RotaryEmbedding"),
    "phi3": ("transformers.models.phi3.modeling_phi3", "Phi3RotaryEmbedding"),
    "gemma3_text": ("transformers.models.gemma3.modeling_gemma3", "Gemma3RotaryEmbedding"),
    "gpt_neox": ("transformers.models.gpt_neox.modeling_gpt_neox", "GPTNeoXRotaryEmbedding"),
}


def f32(x):
    """A float32 value as the shortest decimal that reads back to it."""
    v = float(x)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    want = struct.pack("<f", v)
    for p in range(6, 10):
        t = float("%.*g" % (p, v))
        if struct.pack("<f", t) == want:
            return t
    return float("%.9g" % v)


def flist(t):
    return [f32(v) for v in t.detach().float().cpu().reshape(-1).tolist()]


def llama_base(hd, maxpos, heads=4, **kw):
    c = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hd * heads,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "head_dim": hd,
        "num_hidden_layers": 1,
        "intermediate_size": 64,
        "vocab_size": 64,
        "max_position_embeddings": maxpos,
        "rms_norm_eps": 1e-5,
    }
    c.update(kw)
    return c


def phi3_base(hidden, heads, maxpos, orig=None, **kw):
    c = {
        "model_type": "phi3",
        "architectures": ["Phi3ForCausalLM"],
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "num_hidden_layers": 1,
        "intermediate_size": 64,
        "vocab_size": 64,
        "max_position_embeddings": maxpos,
        "rms_norm_eps": 1e-5,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if orig is not None:
        c["original_max_position_embeddings"] = orig
    c.update(kw)
    return c


def factors(n, lo, hi, seed):
    """Varied, increasing-ish factors like Phi-3.5's (rounded to 6 digits)."""
    out = []
    for i in range(n):
        x = i / max(n - 1, 1)
        v = lo + (hi - lo) * x * x + 0.03 * math.sin(3.7 * i + seed)
        out.append(round(max(v, 1.0), 6))
    return out


def fresh(*calls):
    return [{"pos0": p, "rows": r} for p, r in calls]


def load_json(name):
    """A fixture's config.json (name like "tiny-llama3")."""
    for p in (os.path.join(SHARED, "models", name, "config.json"), os.path.join(HERE, "configs", name + ".json")):
        if os.path.exists(p):
            with open(p) as f:
                return json.load(f)
    raise FileNotFoundError("config.json of %s: set LLMQ_SHARED or put configs/%s.json beside this script" % (name, name))


CASES = []


def case(name, cfg, calls, layer_type="", head_dim=None, dtype="float32", sequence=False, gpu=False, note="", round=""):
    CASES.append(dict(name=name, config=cfg, calls=calls, layer_type=layer_type, head_dim=head_dim,
                      dtype=dtype, sequence=sequence, gpu=gpu, note=note, round=round))


# --- default -----------------------------------------------------------------
case("default_v5", llama_base(64, 2048, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
     fresh((0, 16), (4000, 8)), head_dim=64, gpu=True)
case("default_legacy_theta", llama_base(128, 8192, rope_theta=500000.0, rope_scaling=None),
     fresh((0, 8), (8000, 4)), head_dim=128)
case("default_partial_neox", {
    "model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"], "hidden_size": 256,
    "num_attention_heads": 4, "num_hidden_layers": 1, "intermediate_size": 64, "vocab_size": 64,
    "max_position_embeddings": 2048, "rotary_pct": 0.25, "rotary_emb_base": 10000,
}, fresh((0, 8), (1500, 4)), head_dim=64)

# --- linear ------------------------------------------------------------------
case("linear_v5", llama_base(64, 8192, rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}),
     fresh((0, 8), (3000, 4)), head_dim=64, gpu=True)
case("linear_legacy", llama_base(64, 4096, rope_theta=10000.0, rope_scaling={"type": "linear", "factor": 2.0}),
     fresh((0, 8), (3000, 4)), head_dim=64)

# --- dynamic -----------------------------------------------------------------
dyn = {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}
case("dynamic_v5", llama_base(64, 64, rope_parameters=dict(dyn)),
     fresh((0, 40), (0, 64), (0, 65), (0, 100), (150, 1), (0, 1000)), head_dim=64, gpu=True)
case("dynamic_legacy", llama_base(128, 2048, rope_theta=1000000.0, rope_scaling={"type": "dynamic", "factor": 2.0}),
     fresh((0, 1000), (0, 3000), (2999, 1)), head_dim=128)
case("dynamic_partial", llama_base(64, 64, rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0,
                                                             "partial_rotary_factor": 0.5}),
     fresh((0, 32), (0, 200)), head_dim=64)
case("dynamic_sequence", llama_base(64, 64, rope_parameters=dict(dyn)),
     [{"pos0": 0, "rows": 50}, {"pos0": 50, "rows": 30}, {"pos0": 80, "rows": 1}, {"pos0": 81, "rows": 1},
      {"pos0": 0, "rows": 40}, {"pos0": 0, "rows": 100},
      {"pos0": 0, "rows": 70, "history": "transformers keeps the 100-token table: a shorter call above the original length does not shrink it"},
      {"pos0": 0, "rows": 10}],
     head_dim=64, sequence=True)
case("dynamic_bf16", llama_base(32, 64, heads=2, rope_parameters=dict(dyn)),
     fresh((0, 40), (0, 100)), head_dim=32, dtype="bfloat16")

# --- llama3 ------------------------------------------------------------------
case("llama3_tiny", load_json("tiny-llama3"), fresh((0, 48), (1000, 4)), head_dim=32, gpu=True)
case("llama3_tiny_bf16", load_json("tiny-llama3"), fresh((0, 48), (1000, 4)), head_dim=32, dtype="bfloat16")
l31 = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
case("llama3_8b_v5", llama_base(128, 131072, heads=32, rope_parameters=dict(l31, rope_type="llama3", rope_theta=500000.0)),
     fresh((0, 8), (100000, 2)), head_dim=128, gpu=True)
cfg = llama_base(128, 131072, heads=32, rope_theta=500000.0, rope_scaling=dict(l31, rope_type="llama3"))
del cfg["head_dim"]
case("llama3_8b_legacy", cfg, fresh((0, 8), (100000, 2)), head_dim=128)

# --- yarn --------------------------------------------------------------------
q = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584, "num_attention_heads": 28,
     "num_key_value_heads": 4, "num_hidden_layers": 1, "intermediate_size": 64, "vocab_size": 64,
     "max_position_embeddings": 32768, "rope_theta": 1000000.0,
     "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}}
case("yarn_qwen25_legacy", q, fresh((0, 8), (30000, 2)), head_dim=128, gpu=True)
case("yarn_explicit_attn_factor", llama_base(64, 65536, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "attention_factor": 1.25, "beta_fast": 16.0, "beta_slow": 2.0,
    "original_max_position_embeddings": 4096}), fresh((0, 8), (20000, 2)), head_dim=64,
    note="factor 8 differs from max_position_embeddings/original = 16")
case("yarn_mscale", llama_base(64, 163840, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "mscale": 0.707, "mscale_all_dim": 1.0,
    "beta_fast": 32, "beta_slow": 1, "original_max_position_embeddings": 4096}), fresh((0, 8), (100000, 2)), head_dim=64)
case("yarn_mscale_equal", llama_base(64, 163840, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 1.0,
    "original_max_position_embeddings": 4096}), fresh((0, 8),), head_dim=64)
case("yarn_mscale_only", llama_base(64, 163840, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "mscale": 0.707,
    "original_max_position_embeddings": 4096}), fresh((0, 8),), head_dim=64)
case("yarn_no_truncate", llama_base(64, 8192, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "truncate": False,
    "original_max_position_embeddings": 2048}), fresh((0, 8), (6000, 2)), head_dim=64)
case("yarn_no_factor", llama_base(64, 4096, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "original_max_position_embeddings": 1024}), fresh((0, 8),), head_dim=64)
case("yarn_no_original", llama_base(64, 4096, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0}), fresh((0, 8),), head_dim=64)
case("yarn_partial", llama_base(64, 16384, rope_parameters={
    "rope_type": "yarn", "rope_theta": 50000.0, "factor": 4.0, "partial_rotary_factor": 0.5,
    "original_max_position_embeddings": 4096}), fresh((0, 8), (10000, 2)), head_dim=64)
case("yarn_bf16", llama_base(32, 1024, heads=2, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256}),
    fresh((0, 40), (900, 4)), head_dim=32, dtype="bfloat16")

# --- longrope ----------------------------------------------------------------
p35 = phi3_base(3072, 32, 131072, orig=4096, rope_theta=10000.0, rope_scaling={
    "type": "longrope", "short_factor": factors(48, 1.0, 1.2, 0.0), "long_factor": factors(48, 1.0, 60.0, 1.0)})
case("longrope_phi35_legacy", p35, fresh((0, 100), (0, 4096), (0, 4097), (0, 5000), (4096, 1)), head_dim=96, gpu=True)
p4 = phi3_base(3072, 24, 131072, orig=4096, rope_theta=10000.0, partial_rotary_factor=0.75, rope_scaling={
    "type": "longrope", "short_factor": factors(48, 1.0, 1.1, 2.0), "long_factor": factors(48, 1.0, 40.0, 3.0)})
case("longrope_phi4mini_partial", p4, fresh((0, 10), (0, 5000)), head_dim=128)
case("longrope_llama_v5_explicit", llama_base(32, 2048, rope_parameters={
    "rope_type": "longrope", "rope_theta": 10000.0, "short_factor": factors(16, 1.0, 1.5, 4.0),
    "long_factor": factors(16, 1.0, 8.0, 5.0), "original_max_position_embeddings": 256, "factor": 4.0,
    "attention_factor": 1.1}), fresh((0, 100), (0, 300)), head_dim=32)
case("longrope_llama_v5_default_attn", llama_base(32, 2048, rope_parameters={
    "rope_type": "longrope", "rope_theta": 10000.0, "short_factor": factors(16, 1.0, 1.5, 4.0),
    "long_factor": factors(16, 1.0, 8.0, 5.0), "original_max_position_embeddings": 256}), fresh((0, 100), (0, 300)), head_dim=32)
case("longrope_phi3_v5_inner_original", phi3_base(128, 4, 8192, rope_parameters={
    "rope_type": "longrope", "rope_theta": 10000.0, "short_factor": factors(16, 1.0, 1.5, 6.0),
    "long_factor": factors(16, 1.0, 8.0, 7.0), "original_max_position_embeddings": 2048}), fresh((0, 100), (0, 3000)), head_dim=32,
    note="phi3 config.json without a top-level original_max_position_embeddings")
case("longrope_sequence", phi3_base(128, 4, 8192, orig=256, rope_theta=10000.0, rope_scaling={
    "type": "longrope", "short_factor": factors(16, 1.0, 1.5, 8.0), "long_factor": factors(16, 1.0, 8.0, 9.0)}),
    [{"pos0": 0, "rows": 200}, {"pos0": 200, "rows": 56}, {"pos0": 256, "rows": 1}, {"pos0": 257, "rows": 1},
     {"pos0": 0, "rows": 100}], head_dim=32, sequence=True)
case("longrope_bf16", phi3_base(64, 2, 1024, orig=64, rope_theta=10000.0, partial_rotary_factor=0.75, rope_scaling={
    "type": "longrope", "short_factor": factors(12, 1.0, 1.5, 10.0), "long_factor": factors(12, 1.0, 8.0, 11.0)}),
    fresh((0, 40), (0, 100)), head_dim=32, dtype="bfloat16")

# --- half-precision buffers (module.to(bfloat16)) ------------------------------
case("cast_llama3_tiny", load_json("tiny-llama3"), fresh((0, 48), (1000, 4)), head_dim=32, round="bfloat16")
case("cast_yarn", llama_base(32, 1024, heads=2, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256}),
    fresh((0, 40), (900, 4)), head_dim=32, round="bfloat16")
case("cast_linear", llama_base(64, 4096, rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}),
     fresh((0, 8), (3000, 4)), head_dim=64, round="bfloat16")
case("cast_dynamic_sequence", llama_base(32, 64, heads=2, rope_parameters=dict(dyn)),
     [{"pos0": 0, "rows": 40}, {"pos0": 40, "rows": 60}, {"pos0": 100, "rows": 1}, {"pos0": 0, "rows": 10}],
     head_dim=32, sequence=True, round="bfloat16")
case("cast_longrope_sequence", phi3_base(64, 2, 1024, orig=64, rope_theta=10000.0, partial_rotary_factor=0.75, rope_scaling={
    "type": "longrope", "short_factor": factors(12, 1.0, 1.5, 10.0), "long_factor": factors(12, 1.0, 8.0, 11.0)}),
    [{"pos0": 0, "rows": 40}, {"pos0": 40, "rows": 60}, {"pos0": 100, "rows": 1}, {"pos0": 0, "rows": 10}],
    head_dim=32, sequence=True, round="bfloat16")
case("yarn_null_factor", llama_base(64, 4096, rope_parameters={
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": None, "original_max_position_embeddings": 1024}), fresh((0, 8), (3000, 2)), head_dim=64,
    note="factor null: max_position_embeddings / original_max_position_embeddings")
case("longrope_phi3_su", phi3_base(128, 4, 8192, orig=2048, rope_theta=10000.0, rope_scaling={
    "type": "su", "short_factor": factors(16, 1.0, 1.5, 12.0), "long_factor": factors(16, 1.0, 8.0, 13.0)}),
    fresh((0, 100), (0, 3000)), head_dim=32, note="Phi3Config reads type su as longrope")

# --- the fixtures --------------------------------------------------------------
g3 = load_json("tiny-gemma3")
case("gemma3_tiny_sliding", g3, fresh((0, 48),), layer_type="sliding_attention", head_dim=32)
case("gemma3_tiny_full", g3, fresh((0, 48),), layer_type="full_attention", head_dim=32)
g3old = {k: v for k, v in g3.items() if k != "rope_parameters"}
g3old.update({"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0}})
case("gemma3_legacy_sliding", g3old, fresh((0, 48),), layer_type="sliding_attention", head_dim=32)
case("gemma3_legacy_full", g3old, fresh((0, 48),), layer_type="full_attention", head_dim=32)
g3y = copy.deepcopy(g3)
g3y["rope_parameters"]["full_attention"] = {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 8.0,
                                             "original_max_position_embeddings": 128, "truncate": False}
case("gemma3_yarn_inner_truncate", g3y, fresh((0, 48), (900, 4)), layer_type="full_attention", head_dim=32,
     note="truncate inside a per-layer-type entry")
case("phi3_tiny", load_json("tiny-phi3"), fresh((0, 48),), head_dim=32)


# -----------------------------------------------------------------------------
def rotary_class(model_type):
    mod, name = ROTARY[model_type]
    return getattr(importlib.import_module(mod), name)


def build_rotary(cls, config, layer_type):
    params = inspect.signature(cls.__init__).parameters
    if "layer_type" in params and layer_type:
        return cls(config, layer_type=layer_type)
    return cls(config)


def used_buffers(mod, layer_type):
    inv = None
    for n in ([layer_type + "_inv_freq"] if layer_type else []) + ["inv_freq"]:
        if hasattr(mod, n) and isinstance(getattr(mod, n), torch.Tensor):
            inv = getattr(mod, n)
            break
    att = None
    for n in ([layer_type + "_attention_scaling"] if layer_type else []) + ["attention_scaling"]:
        if hasattr(mod, n):
            att = getattr(mod, n)
            break
    if isinstance(att, dict):
        att = att.get(layer_type)
    if isinstance(att, torch.Tensor):
        att = att.item()
    return inv, att


def call(mod, layer_type, pos0, rows, device, xdtype=None):
    xdtype = xdtype or torch.float32
    pos = torch.arange(pos0, pos0 + rows, dtype=torch.int64, device=device)[None, :]
    x = torch.zeros(1, rows, 8, dtype=xdtype, device=device)
    fparams = inspect.signature(mod.forward).parameters
    if "layer_type" in fparams and layer_type:
        cos, sin = mod(x, pos, layer_type=layer_type)
    else:
        cos, sin = mod(x, pos)
    return cos[0].float(), sin[0].float()


def positions_of(pos0, rows):
    ps = sorted({pos0, pos0 + rows // 2, pos0 + rows - 1} & set(range(pos0, pos0 + rows)))
    return ps


def record(mod, layer_type, c, device):
    cos, sin = call(mod, layer_type, c["pos0"], c["rows"], device)
    inv, att = used_buffers(mod, layer_type)
    half = cos.shape[-1] // 2
    ps = positions_of(c["pos0"], c["rows"])
    idx = [p - c["pos0"] for p in ps]
    out = dict(c)
    out["inv_freq"] = flist(inv) if inv is not None else None
    out["inv_freq_dtype"] = str(inv.dtype) if inv is not None else None
    out["attention_scaling"] = att
    out["rot_dim"] = cos.shape[-1]
    out["halves_equal"] = bool(torch.equal(cos[:, :half], cos[:, half:]) and torch.equal(sin[:, :half], sin[:, half:]))
    out["positions"] = ps
    out["cos"] = [flist(cos[i, :half]) for i in idx]
    out["sin"] = [flist(sin[i, :half]) for i in idx]
    return out, cos[:, :half], sin[:, :half]


def std_params(config):
    rp = getattr(config, "rope_parameters", None)
    try:
        rp = json.loads(json.dumps(rp, default=str))
    except Exception:
        return str(rp)

    def short(d):
        if isinstance(d, dict):
            return {k: (("list of %d" % len(v)) if isinstance(v, list) and len(v) > 4 else short(v)) for k, v in d.items()}
        return d
    return short(rp)


def bf16_module(config_dict, layer_type):
    """One-layer model saved and reloaded in bfloat16; returns its rotary module."""
    from transformers import AutoModelForCausalLM
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config_dict, f)
        config = AutoConfig.from_pretrained(d)
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_config(config)
        m.to(torch.bfloat16)
        m.save_pretrained(d)
        m2 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16)
        rot = m2.model.rotary_emb
        info = {"model_dtype": str(next(m2.parameters()).dtype),
                "buffers": {n: str(b.dtype) for n, b in rot.named_buffers()}}
        try:
            m3 = AutoModelForCausalLM.from_pretrained(d, dtype="auto")
            info["auto_model_dtype"] = str(next(m3.parameters()).dtype)
            info["auto_buffers"] = {n: str(b.dtype) for n, b in m3.model.rotary_emb.named_buffers()}
        except Exception as e:
            info["auto_error"] = repr(e)
        return rot, m2.config, info


def run_case(cs):
    res = {k: cs[k] for k in ("name", "config", "layer_type", "head_dim", "dtype", "sequence", "note", "round")}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cs["config"], f)
        config = AutoConfig.from_pretrained(d)
    res["config_class"] = type(config).__name__
    res["standardized_rope_parameters"] = std_params(config)
    lt = cs["layer_type"]
    cls = rotary_class(cs["config"]["model_type"])
    if cs["dtype"] == "bfloat16":
        base, config, info = bf16_module(cs["config"], lt)
        res["bf16_info"] = info
        make = lambda: copy.deepcopy(base)
    elif cs["round"] == "bfloat16":
        # The module cast with the model (module.to(bfloat16)): its inv_freq
        # buffers become bf16, as RoundFreq models.
        make = lambda: build_rotary(cls, config, lt).to(torch.bfloat16)
    else:
        make = lambda: build_rotary(cls, config, lt)
    calls = []
    gpu_diff = 0.0
    mod = make()
    for c in cs["calls"]:
        m = mod if cs["sequence"] else make()
        rec, cos, sin = record(m, lt, c, "cpu")
        if cs["gpu"] and torch.cuda.is_available() and not cs["sequence"]:
            g = make().to("cuda")
            gcos, gsin = call(g, lt, c["pos0"], c["rows"], "cuda")
            h = gcos.shape[-1] // 2
            dd = max((gcos[:, :h].cpu() - cos).abs().max().item(), (gsin[:, :h].cpu() - sin).abs().max().item())
            ginv, _ = used_buffers(g, lt)
            rec["gpu_max_abs_diff"] = dd
            if ginv is not None and rec["inv_freq"] is not None:
                rec["gpu_inv_freq_max_rel_diff"] = max(
                    abs(a - b) / abs(b) for a, b in zip(flist(ginv), rec["inv_freq"]))
            gpu_diff = max(gpu_diff, dd)
        calls.append(rec)
    res["calls"] = calls
    return res


def dump_sources():
    """Copies of the transformers sources the numbers come from (for reading)."""
    src = os.path.join(OUT, "src")
    os.makedirs(src, exist_ok=True)
    root = os.path.dirname(transformers.__file__)
    files = ["modeling_rope_utils.py", "configuration_utils.py",
             "models/llama/modeling_llama.py", "models/phi3/configuration_phi3.py", "models/phi3/modeling_phi3.py",
             "models/gemma3/configuration_gemma3.py", "models/gemma3/modeling_gemma3.py",
             "models/qwen2/configuration_qwen2.py", "models/gpt_neox/modeling_gpt_neox.py",
             "models/gpt_neox/configuration_gpt_neox.py", "models/llama/configuration_llama.py"]
    bundle = []
    for f in files:
        p = os.path.join(root, f)
        try:
            with open(p) as fh:
                text = fh.read()
        except Exception as e:
            text = "ERROR %r" % e
        if f in ("configuration_utils.py",):
            # keep only the rope parts
            lines = text.splitlines()
            keep = [i for i, l in enumerate(lines) if "rope" in l.lower()]
            sel = set()
            for i in keep:
                sel.update(range(max(0, i - 20), min(len(lines), i + 40)))
            text = "\n".join("%6d %s" % (i + 1, lines[i]) for i in sorted(sel))
        bundle.append("=" * 30 + " " + f + "\n" + text)
    # where else inv_freq is touched (model loading, init)
    grep = []
    for dp, _, fns in os.walk(root):
        if "/models/" in dp + "/":
            continue
        for fn in fns:
            if fn.endswith(".py"):
                p = os.path.join(dp, fn)
                try:
                    lines = open(p).read().splitlines()
                except Exception:
                    continue
                for i, l in enumerate(lines):
                    if "inv_freq" in l or "RotaryEmbedding" in l:
                        lo, hi = max(0, i - 6), min(len(lines), i + 12)
                        grep.append("--- %s:%d\n%s" % (os.path.relpath(p, root), i + 1, "\n".join(lines[lo:hi])))
    bundle.append("=" * 30 + " grep inv_freq outside models/\n" + "\n".join(grep))
    with open(os.path.join(src, "transformers-rope-sources.txt"), "w") as fh:
        fh.write("\n".join(bundle))


def trim(out):
    """Keeps the file small: cos/sin at the first and last position of each
    call only, rounded to 8 decimals (5e-9, far below the 1e-6 the test
    asks), and errors to their last line (no local paths)."""
    for c in out["cases"]:
        if "error" in c:
            c["error"] = c["error"].strip().splitlines()[-1]
        for k in c.get("calls", []):
            ps = k.get("positions")
            if not ps:
                continue
            keep = [i for i, p in enumerate(ps) if p in (ps[0], ps[-1])]
            k["positions"] = [ps[i] for i in keep]
            for n in ("cos", "sin"):
                k[n] = [[round(v, 8) for v in k[n][i]] for i in keep]
    return out


def write(out, path):
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("wrote", path, os.path.getsize(path), "bytes")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--trim":
        with open(sys.argv[2]) as f:
            write(trim(json.load(f)), sys.argv[3])
        return
    global OUT
    OUT = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(OUT, exist_ok=True)
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_threads": torch.get_num_threads(),
            "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    try:
        dump_sources()
    except Exception:
        meta["dump_sources_error"] = traceback.format_exc()
    torch.set_grad_enabled(False)
    results = []
    for cs in CASES:
        try:
            results.append(run_case(cs))
            print("ok  ", cs["name"], flush=True)
        except Exception:
            tb = traceback.format_exc()
            results.append({"name": cs["name"], "config": cs["config"], "error": tb})
            print("FAIL", cs["name"], tb.splitlines()[-1], flush=True)
    out = {"generator": "scripts/rope-oracles.py", "meta": meta, "cases": results}
    write(trim(out), os.path.join(OUT, "rope-oracles.json"))


if __name__ == "__main__":
    main()
