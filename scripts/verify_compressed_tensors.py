#!/usr/bin/env python3
"""Independent check of llmq's compressed-tensors export.

Nothing here uses llmq code. For each exported folder the script

 1. reads config.json and model.safetensors and dequantizes every quantized
    linear from the compressed-tensors format definition alone:
    pack-quantized words are unpacked (32/b codes per int32, first code in
    the lowest bits, stored as q + 2^(b-1)), zero points unpacked down the
    columns, and w = (q - zp) * s with the scale of the element's tensor,
    row or group; int-/naive-quantized weights are int8 codes, float-quantized
    ones FP8 E4M3;
 2. if the compressed_tensors library is installed, dequantizes the same
    tensors with the library's own unpack_from_int32 / dequantize and
    reports the largest difference to step 1 (must be 0);
 3. builds transformers' model for the config (quantization_config removed)
    in float32 (TF32 off), loads the dequantized weights, and — for layers
    whose config has input_activations — quantizes each linear's input
    before the product the way the serving runtime does (dynamic per token:
    s = absmax / (2^(b-1) - 1), q = round(x / s) with ties to even, x' = q*s;
    FP8: s = absmax / 448; static: the stored input_scale). Rotary
    frequencies are rounded to the checkpoint's dtype (config "dtype"), as
    transformers computes them when it runs the model in that dtype and as
    llmq does (nn.Rope.RoundFreq); unrounded float32 frequencies move the
    logits ~3e-4 relative on 34 positions, which is reported too;
 4. runs llmq's fixed token ids and compares with llmq's logits written by
    tools/dumplogits, as max |logit_torch - logit_llmq| / max |logit_llmq|:
      - weight-only paths (W4A16; W8A8 with llmq run --weights-only and no
        activation quantization here): bar 1e-3;
      - W8A8 with activation quantization on both sides, end to end:
        reported, not barred. Rounding x/s to int8 is discontinuous: fp32
        summation-order noise (~1e-7) moves a few of the ~10^5 quantized
        activations across a rounding boundary, each such flip changes a
        value by a whole step (absmax/127 of its token), and flips compound
        through the layers, so two correct implementations differ at the
        1e-2 level end to end;
      - W8A8 per linear, on llmq's own inputs: dumplogits --record-linears
        stores the input every linear of the blocks received in llmq's
        reference run and the output it produced; each transformers linear
        (with its input quantization) is applied to exactly that input and
        compared with llmq's output: bar 1e-3 per linear. With identical
        inputs the int8 codes are identical, so this checks the weights and
        the activation quantization of every layer free of the flips;
      - teacher-forced per decoder layer: each transformers decoder layer is
        fed llmq's hidden state (dumplogits' hidden_states) and its output
        compared with llmq's next hidden state (the last through the final
        norm), with the logits that follow: bar 1e-3 on weight-only paths;
        with activation quantization reported (inside a layer the sums
        still differ in order, so an occasional flip remains);
      - float64, end to end (llmq's logits from dumplogits --float64, F64):
        the same transformers model in float64 — weights dequantized in
        float64 (exact: code x float32 scale), inputs fake-quantized in
        float64 by the rule above, the bf16-rounded rotary frequencies
        widened to float64 and llmq's own frequencies (rope_inv_freq)
        checked equal to them. transformers' Llama keeps three steps in
        float32 even in a float64 model (RMSNorm casts its input, the
        rotary cos/sin, eager attention's softmax); those are computed in
        float64 here (same formulas, see float64_model). Summation noise is
        then ~1e-16, too small to move a value across an int8 rounding
        boundary. Exact ties remain: at the first layer x/s is a ratio of
        bf16 embedding and norm values (RMSNorm's scale cancels) and is
        exactly k+0.5 for a few values, which any floating-point evaluation
        misses by a rounding error to either side; so in float64 both sides
        take x/s within 1e-9 of k+0.5 as that tie and round it to even (the
        rule's answer in exact arithmetic). The two implementations must
        then agree: bar 1e-3, with activation quantization on both sides;
 5. if transformers can load the folder through compressed-tensors
    (CompressedTensorsConfig(run_compressed=False)), compares its
    decompressed weights with step 1 (must be 0) and reports its logits (with
    compressed-tensors' own activation simulation; not barred);
 6. with --vllm, if vLLM is installed, serves the folder (bfloat16) and
    compares the log-probabilities of the prompt tokens with llmq's.

Usage:
  verify_compressed_tensors.py --export DIR --logits FILE [--logits FILE ...] [--vllm]
"""

import argparse
import json
import os
import re
import struct
import sys
import time
import types

import torch

BAR = 1e-3  # relative agreement required of step 4


# ---------------------------------------------------------------- files


def load_safetensors(path):
    """All tensors of a safetensors file (the safetensors package if present)."""
    try:
        from safetensors.torch import load_file

        return load_file(path)
    except ImportError:
        pass
    # Minimal reader of the documented layout: u64 header length, JSON
    # header, raw little-endian data.
    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
              "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8}
    dtypes["F8_E4M3"] = getattr(torch, "float8_e4m3fn", torch.uint8)  # raw codes on old torch
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        buf = bytearray(data[b:end])
        t = torch.frombuffer(buf, dtype=dtypes[e["dtype"]]) if buf else torch.empty(0, dtype=dtypes[e["dtype"]])
        out[name] = t.reshape(e["shape"])
    return out


def read_export(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    tensors = {}
    index = os.path.join(d, "model.safetensors.index.json")
    files = ["model.safetensors"]
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    for fn in files:
        tensors.update(load_safetensors(os.path.join(d, fn)))
    return cfg, tensors


# ---------------------------------------------------------------- config


def resolve_args(a):
    """QuantizationArgs with the library's defaults."""
    if a is None:
        return None
    a = dict(a)
    a.setdefault("num_bits", 8)
    a["type"] = (a.get("type") or "int").lower()
    a.setdefault("symmetric", True)
    if a.get("strategy") is None:
        g = a.get("group_size")
        a["strategy"] = "tensor" if g is None else ("group" if g > 0 else "channel")
    a["dynamic"] = bool(a.get("dynamic", False))
    return a


def scheme_for(qc, name):
    """The config group of module `name` (ignore first; a name or re: match
    wins over the Linear class), or None."""

    def name_match(t):
        return re.match(t[3:], name) is not None if t.startswith("re:") else t == name

    if any(name_match(t) for t in qc.get("ignore") or []):
        return None
    groups = sorted(qc["config_groups"].items())
    for kind in ("name", "class"):
        for gname, g in groups:
            for t in g["targets"]:
                if (kind == "name" and name_match(t)) or (kind == "class" and t == "Linear"):
                    fmt = g.get("format") or qc["format"]
                    return {"name": gname, "format": fmt, "weights": resolve_args(g["weights"]),
                            "input": resolve_args(g.get("input_activations"))}
    return None


# ---------------------------------------------------------------- dequantization


def unpack(words, bits, n, dim):
    """Signed codes from int32 words packed along `dim` (1: rows, 0: columns)."""
    pf = 32 // bits
    w = words.to(torch.int64) & 0xFFFFFFFF
    if dim == 0:
        w = w.t()
    rows, wc = w.shape
    out = torch.empty(rows, wc * pf, dtype=torch.int64)
    for i in range(pf):
        out[:, i::pf] = (w >> (bits * i)) & ((1 << bits) - 1)
    out = out[:, :n] - (1 << (bits - 1))
    return out.t() if dim == 0 else out


def fp8_e4m3_decode(codes):
    """Values of FP8 E4M3FN bytes (OCP FP8: bias 7, subnormals m/8*2^-6)."""
    c = codes.to(torch.int64) & 0xFF
    sign = torch.where(c >= 128, -1.0, 1.0).double()
    e = (c >> 3) & 0xF
    m = (c & 7).double()
    val = torch.where(e == 0, m / 8 * 2.0 ** -6, (1 + m / 8) * torch.pow(2.0, (e - 7).double()))
    val = torch.where((e == 15) & (m == 7), torch.full_like(val, float("nan")), val)
    return (sign * val).float()


def dequantize_manual(t, prefix, sch, dtype=torch.float32):
    """Dequantized weight of module `prefix`, computed in dtype (float32, or
    float64 where code x scale is exact)."""
    w = sch["weights"]
    bits = w["num_bits"]
    if sch["format"] == "pack-quantized":
        rows, cols = [int(v) for v in t[prefix + ".weight_shape"].tolist()]
        q = unpack(t[prefix + ".weight_packed"], bits, cols, 1)
    else:
        raw = t[prefix + ".weight"]
        rows, cols = raw.shape
        q = None if w["type"] == "float" else raw.to(torch.int64)
    s = t[prefix + ".weight_scale"].to(dtype)
    if w["strategy"] == "tensor":
        s_full = s.reshape(1, 1).expand(rows, cols)
        gidx = None
    elif w["strategy"] == "channel":
        s_full = s.reshape(rows, 1).expand(rows, cols)
        gidx = None
    else:
        g = w["group_size"]
        gidx = t.get(prefix + ".weight_g_idx")
        gidx = (torch.arange(cols) // g) if gidx is None else gidx.to(torch.int64)
        s_full = s.reshape(rows, -1)[:, gidx]
    if w["type"] == "float":
        raw = t[prefix + ".weight"]
        v = fp8_e4m3_decode(raw.view(torch.uint8) if raw.dtype != torch.uint8 else raw)
        return v.to(dtype) * s_full
    v = q.to(dtype)
    if not w["symmetric"]:
        zp = t[prefix + ".weight_zero_point"]
        if sch["format"] == "pack-quantized" and w["strategy"] in ("group", "channel"):
            zp = unpack(zp, bits, s.reshape(rows, -1).shape[0], 0)
        zp = zp.to(torch.int64).reshape(s.reshape(rows, -1).shape if w["strategy"] != "tensor" else (1, 1))
        if w["strategy"] == "tensor":
            zfull = zp.expand(rows, cols)
        elif w["strategy"] == "channel":
            zfull = zp.reshape(rows, 1).expand(rows, cols)
        else:
            zfull = zp[:, gidx]
        v = v - zfull.to(dtype)
    return v * s_full


def quantized_modules(t):
    return sorted(k[: -len(".weight_scale")] for k in t if k.endswith(".weight_scale"))


def dequantize_library(t, prefix, sch):
    """The same weight through compressed_tensors' own functions."""
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import dequantize

    try:
        from compressed_tensors.compressors.quantized_compressors.pack_quantized import unpack_from_int32
    except ImportError:
        from compressed_tensors.compressors import unpack_from_int32
    w = sch["weights"]
    args = QuantizationArgs(num_bits=w["num_bits"], type=w["type"], symmetric=w["symmetric"],
                            strategy=w["strategy"], group_size=w.get("group_size"))
    scale = t[prefix + ".weight_scale"]
    zp = t.get(prefix + ".weight_zero_point")
    if sch["format"] == "pack-quantized":
        shape = torch.Size([int(v) for v in t[prefix + ".weight_shape"].tolist()])
        q = unpack_from_int32(t[prefix + ".weight_packed"], w["num_bits"], shape)
        if zp is not None and w["strategy"] in ("group", "channel"):
            zshape = torch.Size([shape[0], scale.reshape(shape[0], -1).shape[1]])
            zp = unpack_from_int32(zp, w["num_bits"], zshape, packed_dim=0)
    else:
        q = t[prefix + ".weight"]
    return dequantize(x_q=q, scale=scale, zero_point=zp, args=args, g_idx=t.get(prefix + ".weight_g_idx")).float()


# ---------------------------------------------------------------- activations


TIE_TOL = 1e-9  # float64 only: x/s this close to k+0.5 is that exact tie


def round_half_even(u, snap_ties):
    """torch.round (ties to even). With snap_ties (float64 runs), a quotient
    within TIE_TOL of k+0.5 is first set to k+0.5 exactly: it is a tie in
    exact arithmetic that floating point missed by a rounding error (see
    float64_model), and the rule rounds it to even."""
    if snap_ties:
        f = torch.floor(u)
        u = torch.where((u - f - 0.5).abs() < TIE_TOL, f + 0.5, u)
    return torch.round(u)


def fake_quant_input(x, a, input_scale=None, input_zero=None, snap_ties=False):
    """What the serving runtime feeds the GEMM instead of x (see the
    module docstring)."""
    if a is None:
        return x
    shape = x.shape
    if a["strategy"] == "token":
        xs = x.reshape(-1, shape[-1])
    elif a["strategy"] == "group":
        xs = x.reshape(-1, a["group_size"])
    else:
        xs = x.reshape(1, -1)
    if a["type"] == "float":
        s = input_scale if input_scale is not None else xs.abs().amax(dim=1, keepdim=True) / 448.0
        s = torch.where(s > 0, s, torch.ones_like(s))
        y = (xs / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s
        return y.reshape(shape)
    b = a["num_bits"]
    if a["symmetric"]:
        qmax = 2 ** (b - 1) - 1
        s = input_scale if input_scale is not None else xs.abs().amax(dim=1, keepdim=True) / qmax
        s = torch.where(s > 0, s, torch.ones_like(s))
        y = round_half_even(xs / s, snap_ties).clamp(-qmax - 1, qmax) * s
        return y.reshape(shape)
    qmin, qmax = -(2 ** (b - 1)), 2 ** (b - 1) - 1
    if input_scale is not None:
        s, z = input_scale, input_zero
    else:
        lo = xs.amin(dim=1, keepdim=True).clamp(max=0)
        hi = xs.amax(dim=1, keepdim=True).clamp(min=0)
        s = (hi - lo) / (qmax - qmin)
        s = torch.where(s > 0, s, torch.ones_like(s))
        z = (qmin - torch.round(lo / s)).clamp(qmin, qmax)
    y = (round_half_even(xs / s, snap_ties) + z).clamp(qmin, qmax)
    return ((y - z) * s).reshape(shape)


# ---------------------------------------------------------------- model


def safetensors_metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


ACT = {"on": True}  # whether the input-quantization hooks run


def build_model(cfg, state, device, act_schemes, tensors, dtype=torch.float32):
    import transformers

    c = dict(cfg)
    c.pop("quantization_config", None)
    model_type = c.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **c)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model = model.to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = getattr(config, "tie_word_embeddings", False)
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        # The module layout differs from the checkpoint's (transformers 5
        # fuses MoE experts into 3-D parameters): let from_pretrained's own
        # conversion read the dequantized checkpoint instead.
        import tempfile

        from safetensors.torch import save_file

        tmp = tempfile.mkdtemp()
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(c | {"model_type": model_type}, f)
        save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(tmp, "model.safetensors"))
        model = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=dtype, attn_implementation="eager")
        mods = dict(model.named_modules())
        n = len(act_schemes)
        act_schemes = {k: v for k, v in act_schemes.items() if k in mods}
        print(f"   (module layout differs from the checkpoint's: loaded through from_pretrained; activation "
              f"quantization hooked on the {len(act_schemes)} of {n} quantized linears that are modules there)")
    elif tied:
        model.tie_weights()
    model.to(device).eval()
    snap_ties = dtype == torch.float64
    for name, a in act_schemes.items():
        mod = model.get_submodule(name)
        isc = tensors.get(name + ".input_scale")
        izp = tensors.get(name + ".input_zero_point")
        isc = None if isc is None else isc.float().reshape(()).to(device)
        izp = None if izp is None else izp.float().reshape(()).to(device)

        def hook(m, args, a=a, isc=isc, izp=izp):
            if not ACT["on"]:
                return None
            return (fake_quant_input(args[0], a, isc, izp, snap_ties),) + tuple(args[1:])

        mod.register_forward_pre_hook(hook)
    return model


def set_rope_dtype(model, dtype_name):
    """Round every rotary inv_freq buffer to dtype_name (None: recompute in
    float32, transformers' formula)."""
    n = 0
    for mod in model.modules():
        f = getattr(mod, "inv_freq", None)
        if not isinstance(f, torch.Tensor):
            continue
        if not hasattr(mod, "_inv_freq_f32"):
            mod._inv_freq_f32 = f.detach().float().clone()
        base = mod._inv_freq_f32
        mod.inv_freq = base.to(getattr(torch, dtype_name)).float() if dtype_name else base.clone()
        n += 1
    return n


def logits_of(model, ids, device):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=device))
    return out.logits[0].float().cpu()


def teacher_forced(model, ids, hidden, device):
    """Feed decoder layer i llmq's hidden state i; return each layer's
    relative difference to llmq's hidden state i+1 (the last after the final
    norm) and the logits that follow."""
    layers = model.model.layers
    got, handles = {}, []
    for i, layer in enumerate(layers):
        def pre(mod, args, kwargs=None, i=i):
            h = hidden[i].unsqueeze(0).to(device)
            if args or kwargs is None:
                args = (h,) + tuple(args[1:])
            else:
                kwargs = dict(kwargs)
                kwargs["hidden_states"] = h
            return args if kwargs is None else (args, kwargs)

        def post(mod, args, *rest, i=i):
            out = rest[-1]  # (output) or (kwargs, output)
            got[i] = (out[0] if isinstance(out, tuple) else out)[0].detach().float().cpu()

        try:
            handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(layer.register_forward_hook(post, with_kwargs=True))
        except TypeError:  # torch < 2.0: positional hidden_states only
            handles.append(layer.register_forward_pre_hook(lambda m, a, i=i: pre(m, a, None, i=i)))
            handles.append(layer.register_forward_hook(post))
    handles.append(model.model.norm.register_forward_hook(
        lambda m, a, o: got.__setitem__("norm", o[0].detach().float().cpu())))
    try:
        logits = logits_of(model, ids, device)
    finally:
        for h in handles:
            h.remove()
    n = len(layers)
    rels = [rel(got[i], hidden[i + 1]) for i in range(n - 1)] + [rel(got["norm"], hidden[n])]
    return rels, logits


def rel(a, b):
    return (a - b).abs().max().item() / b.abs().max().item()


# ---------------------------------------------------------------- float64
#
# transformers' Llama run in float64 still rounds to float32 in three places:
# RMSNorm casts its input to float32, the rotary embedding computes cos/sin
# in float32, and eager attention takes the softmax in float32. Each would
# add ~1e-7 noise, enough to flip int8 roundings of the next quantized
# input, so float64_model computes those three in float64 with the same
# formulas (the rest of the model, linears and their input quantization
# included, is transformers' own, run in float64). Its input quantization
# also snaps near-ties to exact ties (round_half_even): with bf16 weights,
# the first layer's x/s = 127 * x_i*w_i / max|x_j*w_j| (the RMSNorm scale
# cancels) is exactly k+0.5 for a few values, and float64 lands a rounding
# error to either side of it, differently in every implementation.

CALLS = {"attention": 0}  # float64 attention calls in the last forward


def rms_norm_float64(mod, x):
    """transformers' RMSNorm, w * x / sqrt(mean(x^2) + eps), in x's dtype."""
    return mod.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + mod.variance_epsilon))


def rotary_float64(mod, x, position_ids, *args, **kwargs):
    """cos/sin of position * inv_freq in float64 (transformers' rotate-half
    layout: the frequencies repeated over both halves)."""
    freqs = position_ids[:, :, None].to(torch.float64) * mod.inv_freq.to(torch.float64)[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    scale = getattr(mod, "attention_scaling", 1.0)
    return (emb.cos() * scale).to(x.dtype), (emb.sin() * scale).to(x.dtype)


def attention_float64(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Causal softmax attention in the inputs' dtype, keys/values shared by
    groups of query heads (transformers' repeat_kv order). One unpadded
    sequence: the causal mask is the only mask, built here."""
    CALLS["attention"] += 1
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    t, s = scores.shape[-2:]
    causal = torch.ones(t, s, dtype=torch.bool, device=scores.device).tril(s - t)
    probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def use_float64_attention(model):
    """Route the eager attention of model's family through
    attention_float64 for float64 inputs. The attention modules look up
    eager_attention_forward in their modeling module when called, so
    replacing it there takes effect; float32 inputs keep the original."""
    attn = model.model.layers[0].self_attn
    mod = sys.modules[type(attn).__module__]
    orig = getattr(mod, "eager_attention_forward", None)
    if orig is None:
        raise RuntimeError(f"{mod.__name__} has no eager_attention_forward to replace")
    if getattr(orig, "_llmq_float64", False):
        return

    def dispatch(module, query, *args, **kwargs):
        if query.dtype == torch.float64:
            return attention_float64(module, query, *args, **kwargs)
        return orig(module, query, *args, **kwargs)

    dispatch._llmq_float64 = True
    mod.eager_attention_forward = dispatch


def float64_model(cfg, t, qc, mods, consumed, act_schemes, device, rope_dtype):
    """The transformers model of the export in float64: weights dequantized
    in float64, the same input-quantization hooks, bf16-rounded rotary
    frequencies, and the three float32 steps replaced (see above)."""
    state = {m + ".weight": dequantize_manual(t, m, scheme_for(qc, m), torch.float64) for m in mods}
    state.update({k: v.double() for k, v in t.items() if k not in consumed})
    model = build_model(cfg, state, device, act_schemes, t, dtype=torch.float64)
    set_rope_dtype(model, rope_dtype)
    norms = rotary = 0
    for mod in model.modules():
        if isinstance(getattr(mod, "inv_freq", None), torch.Tensor):
            mod.forward = types.MethodType(rotary_float64, mod)
            rotary += 1
        elif hasattr(mod, "variance_epsilon") and isinstance(getattr(mod, "weight", None), torch.Tensor):
            mod.forward = types.MethodType(rms_norm_float64, mod)
            norms += 1
    want_norms = 2 * model.config.num_hidden_layers + 1
    if norms != want_norms or rotary == 0:
        raise RuntimeError(f"found {norms} RMSNorm modules (want {want_norms}) and {rotary} rotary modules")
    use_float64_attention(model)
    return model, norms, rotary


def logits64_of(model, ids, device):
    """Logits as lm_head computes them (some versions' CausalLM forward casts
    logits to float32 afterwards)."""
    got = {}
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, o: got.__setitem__("logits", o))
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([ids], device=device))
    finally:
        hook.remove()
    return got["logits"][0].cpu()


def check_float64(model, ref, name, act_schemes, f32_ref, device):
    """Step 4's float64 line; returns whether it passes."""
    ids = ref["input_ids"].tolist()
    want = ref["logits"].double()
    act = bool(act_schemes)
    ACT["on"] = act
    CALLS["attention"] = 0
    try:
        got = logits64_of(model, ids, device)
    finally:
        ACT["on"] = True
    layers = model.config.num_hidden_layers
    if got.dtype != torch.float64 or CALLS["attention"] != layers:
        print(f"4. logits vs llmq float64 ({name}): the torch side did not run in float64 "
              f"(logits {got.dtype}, {CALLS['attention']} float64 attention calls for {layers} layers) FAIL")
        return False
    r = rel(got, want)
    top1 = (got.argmax(-1) == want.argmax(-1)).double().mean().item()
    what = "activations quantized on both sides" if act else "weight-only path on both sides"
    print(f"4. logits vs llmq float64 ({name}; {len(ids)} tokens x {want.shape[1]}; {what}; float64 on both sides): "
          f"max|d| = {(got - want).abs().max().item():.3g}, max|logit| = {want.abs().max().item():.3g}, "
          f"relative {r:.3g}, top-1 agreement {top1:.3f} [bar {BAR:g}: {'PASS' if r <= BAR else 'FAIL'}]")
    mine = [m.inv_freq.double().cpu() for m in model.modules() if isinstance(getattr(m, "inv_freq", None), torch.Tensor)]
    theirs = ref.get("rope_inv_freq")
    if theirs is not None and mine:
        d = max((f - theirs.double()).abs().max().item() for f in mine)
        print(f"   rotary frequencies: llmq's ({theirs.numel()} values) vs this model's: "
              + ("identical" if d == 0 else f"max |d| = {d:.3g}"))
    if f32_ref is not None:
        r32 = rel(got, f32_ref[1].double())
        print(f"   (llmq's float32 {f32_ref[0]} logits vs these float64 ones: relative {r32:.3g}; "
              "float32 rounding settles int8 ties and near-ties its own way)")
    return r <= BAR


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True)
    ap.add_argument("--logits", action="append", required=True, help="llmq logits (tools/dumplogits); repeatable")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--vllm", action="store_true", help="also serve the folder with vLLM")
    ap.add_argument("--vllm-only", action="store_true", help="only the vLLM check (step 6)")
    args = ap.parse_args()
    if args.vllm_only:
        ref = load_safetensors(args.logits[0])
        vllm_check(args.export, ref["input_ids"].tolist(), ref["logits"].float())
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ok = True
    name = os.path.basename(os.path.normpath(args.export))
    print(f"== {name}: {args.export}")
    cfg, t = read_export(args.export)
    qc = cfg["quantization_config"]
    groups = {g: {k: v for k, v in s.items() if k != "targets"} for g, s in qc["config_groups"].items()}
    print(f"quantization_config: format {qc['format']}, status {qc['quantization_status']}, ignore {qc.get('ignore')}")
    print(f"config_groups (targets left out): {json.dumps(groups, sort_keys=True)}")

    # 1. dequantize from the format definition.
    state, act_schemes, formats = {}, {}, set()
    mods = quantized_modules(t)
    for m in mods:
        sch = scheme_for(qc, m)
        if sch is None:
            raise SystemExit(f"{m}: quantization tensors but no config group")
        state[m + ".weight"] = dequantize_manual(t, m, sch)
        formats.add(sch["format"])
        if sch["input"] is not None:
            act_schemes[m] = sch["input"]
    consumed = set()
    for m in mods:
        for s in (".weight_packed", ".weight_shape", ".weight_scale", ".weight_zero_point", ".input_scale",
                  ".input_zero_point", ".weight_g_idx", ".weight"):
            consumed.add(m + s)
    for k, v in t.items():
        if k not in consumed:
            state[k] = v.float()
    print(f"1. dequantized {len(mods)} layers ({', '.join(sorted(formats))}) from the format definition; "
          f"{len(act_schemes)} with quantized input activations")

    # 2. the compressed_tensors library's own dequantization.
    try:
        import compressed_tensors

        worst = 0.0
        for m in mods:
            lib = dequantize_library(t, m, scheme_for(qc, m))
            worst = max(worst, (lib - state[m + ".weight"]).abs().max().item())
        print(f"2. compressed_tensors {compressed_tensors.__version__}: its unpack_from_int32/dequantize vs step 1: "
              f"max |dw| = {worst:.3g} over {len(mods)} layers {'PASS' if worst == 0 else 'FAIL'}")
        ok &= worst == 0.0
    except ImportError:
        print("2. compressed_tensors: not installed (library cross-check skipped)")
    except Exception as e:  # an API the script does not know: reported
        print(f"2. compressed_tensors: cross-check could not run ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")

    # 3-4. transformers forward on llmq's ids, against llmq's logits.
    import transformers

    print(f"3. torch {torch.__version__}, transformers {transformers.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "") + ", float32, TF32 off, eager attention")
    model = build_model(cfg, state, args.device, act_schemes, t)
    # transformers keeps inv_freq in float32 whatever the model's dtype, and
    # so does llmq (set ROPE_DTYPE=bfloat16 to round them, as older llmq did).
    rope_dtype = os.environ.get("ROPE_DTYPE") or None
    n_rope = set_rope_dtype(model, rope_dtype)
    print(f"   rotary frequencies in {rope_dtype or 'float32'} ({n_rope} rotary modules)")
    first, model64 = None, None
    for lf in args.logits:
        ref = load_safetensors(lf)
        path = safetensors_metadata(lf).get("path", "?")
        if path == "float64":
            if model64 is None:
                try:
                    model64, norms, rotary = float64_model(cfg, t, qc, mods, consumed, act_schemes, args.device, rope_dtype)
                except Exception as e:
                    print(f"4. float64 model: could not be built ({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}) FAIL")
                    ok = False
                    continue
                print(f"4. float64 model: weights dequantized in float64; {norms} RMSNorm, {rotary} rotary modules and "
                      "eager attention computed in float64; input quantization with exact ties snapped")
            ref32 = None if first is None else (os.path.basename(args.logits[0]), first[1])
            ok &= check_float64(model64, ref, os.path.basename(lf), act_schemes, ref32, args.device)
            continue
        ids = ref["input_ids"].tolist()
        want = ref["logits"].float()
        act = bool(act_schemes) and path != "weights-only"
        ACT["on"] = act
        got = logits_of(model, ids, args.device)
        r = rel(got, want)
        top1 = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
        what = "activations quantized on both sides" if act else "weight-only path on both sides"
        line = (f"4. logits vs llmq {path} ({os.path.basename(lf)}; {len(ids)} tokens x {want.shape[1]}; {what}): "
                f"max|d| = {(got - want).abs().max().item():.3g}, max|logit| = {want.abs().max().item():.3g}, "
                f"relative {r:.3g}, top-1 agreement {top1:.3f}")
        if act:
            print(line + " [end to end through int8 rounding: reported, not barred]")
        else:
            print(line + f" [bar {BAR:g}: {'PASS' if r <= BAR else 'FAIL'}]")
            ok &= r <= BAR
            if rope_dtype:
                set_rope_dtype(model, None)
                r32 = rel(logits_of(model, ids, args.device), want)
                set_rope_dtype(model, rope_dtype)
                print(f"   (the same with unrounded float32 rotary frequencies: relative {r32:.3g})")
        if "hidden_states" in ref and path in ("reference", "weights-only") and (act or not act_schemes):
            rels, tf_logits = teacher_forced(model, ids, ref["hidden_states"].float(), args.device)
            rt = rel(tf_logits, want)
            worst = max(rels + [rt])
            line = (f"4. teacher-forced per decoder layer ({what}): relative difference of each layer's output "
                    f"[{', '.join(f'{x:.2g}' for x in rels)}], logits {rt:.3g}")
            if act:
                print(line + " [reported: inside a layer the attention and MLP sums still differ in order, which"
                      " can flip an int8 rounding; the per-linear check below feeds identical inputs]")
            else:
                print(line + f" [bar {BAR:g}: {'PASS' if worst <= BAR else 'FAIL'}]")
                ok &= worst <= BAR
        lin_names = sorted(k[len("linear_in."):] for k in ref if k.startswith("linear_in."))
        if lin_names:
            rels = {}
            with torch.no_grad():
                for ln in lin_names:
                    x = ref["linear_in." + ln].float().to(args.device)
                    rels[ln] = rel(model.get_submodule(ln)(x).float().cpu(), ref["linear_out." + ln].float())
            worst = max(rels, key=rels.get)
            print(f"4. per linear on llmq's own inputs ({what}; {len(rels)} layers, recorded by dumplogits): "
                  f"largest relative difference {rels[worst]:.3g} ({worst}), median {sorted(rels.values())[len(rels) // 2]:.3g} "
                  f"[bar {BAR:g}: {'PASS' if rels[worst] <= BAR else 'FAIL'}]")
            ok &= rels[worst] <= BAR
        if first is None:
            first = (ids, want)
        ACT["on"] = True
    ids, want = first

    # 5. transformers + compressed-tensors loading the folder itself.
    try:
        from transformers import CompressedTensorsConfig

        import compressed_tensors  # noqa: F401

        t0 = time.time()
        m2 = transformers.AutoModelForCausalLM.from_pretrained(
            args.export, dtype=torch.float32, quantization_config=CompressedTensorsConfig(run_compressed=False))
        m2.to(args.device).eval()
        worst = 0.0
        for m in mods:
            wgt = m2.get_submodule(m).weight.detach().float().cpu()
            worst = max(worst, (wgt - state[m + ".weight"]).abs().max().item())
        print(f"5. transformers.from_pretrained (compressed-tensors, run_compressed=False, {time.time() - t0:.1f}s): "
              f"decompressed weights vs step 1: max |dw| = {worst:.3g} {'PASS' if worst == 0 else 'FAIL'}")
        ok &= worst == 0.0
        set_rope_dtype(m2, rope_dtype)
        got2 = logits_of(m2, ids, args.device)
        print(f"   its logits vs llmq {os.path.basename(args.logits[0])}: relative {rel(got2, want):.3g}"
              + (" (compressed-tensors' own activation fake-quant; not barred)" if act_schemes else ""))
        del m2
    except Exception as e:  # reported, not fatal: the manual path is the check
        print(f"5. transformers + compressed-tensors load: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")

    # 6. vLLM.
    if args.vllm:
        vllm_check(args.export, ids, want)
    print(f"{name}: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def vllm_check(export, ids, want):
    try:
        import vllm
        from vllm import LLM, SamplingParams
    except ImportError:
        print("6. vllm: not installed")
        return
    try:
        t0 = time.time()
        llm = LLM(model=export, dtype="bfloat16", enforce_eager=True, gpu_memory_utilization=0.3,
                  max_model_len=256, skip_tokenizer_init=True)
        sp = SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0, detokenize=False)
        out = llm.generate([{"prompt_token_ids": ids}], sp)[0]
        lp_ref = torch.log_softmax(want.double(), -1)
        worst, agree, n = 0.0, 0, 0
        for pos in range(1, len(ids)):
            d = out.prompt_logprobs[pos]
            tok = ids[pos]
            worst = max(worst, abs(d[tok].logprob - lp_ref[pos - 1, tok].item()))
            best = max(d.items(), key=lambda kv: kv[1].logprob)[0]
            agree += int(best == int(lp_ref[pos - 1].argmax()))
            n += 1
        print(f"6. vllm {vllm.__version__} serving {os.path.basename(os.path.normpath(export))} (bfloat16, {time.time() - t0:.0f}s): "
              f"prompt log-probs vs llmq {os.path.basename(os.path.normpath(export))}: max |d logprob| = {worst:.3g}, "
              f"top-1 agreement {agree}/{n} (bfloat16 serving: reported, not barred)")
    except Exception as e:
        print(f"6. vllm: failed ({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''})")


if __name__ == "__main__":
    sys.exit(main())
