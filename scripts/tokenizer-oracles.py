#!/usr/bin/env python3
"""Reference ids for llmq's tokenizer.json loader (tokenizer/testdata/hf/).

No real tokenizer.json of the models llmq targets can be shipped with the
repository, so this script trains small BPE vocabularies (a few thousand
tokens) with the Hugging Face `tokenizers` library and writes them out with
exactly the pipelines real checkpoints use:

  gpt2            ByteLevel pre-tokenizer with its built-in GPT-2 regex
  gpt2-prefix     the same with add_prefix_space=true
  gpt2-apsconfig  the gpt2 tokenizer.json, tokenizer_config.json says
                  GPT2Tokenizer with add_prefix_space=true
  llama3          Split(Llama-3 regex) + ByteLevel(use_regex=false),
                  ignore_merges with whole pre-tokens added to the vocab,
                  TemplateProcessing with <|begin_of_text|>
  qwen2           NFC normalizer, Split(Qwen2 regex) + ByteLevel, its
                  special tokens, bos_token null
  qwen35          the qwen2 vocabulary with the \\p{M} variant of the regex
  qwen2-splitspecial the qwen2 tokenizer.json, split_special_tokens=true in
                  tokenizer_config.json (special tokens in text are text)
  llama2          SentencePiece-style BPE with byte_fallback: normalizer
                  Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer,
                  decoder Sequence[Replace, ByteFallback, Fuse, Strip]
  phi3            the llama2 pipeline with added tokens that use rstrip,
                  lstrip, single_word and normalized; add_bos_token=false
  sp-unk          the llama2 pipeline without byte_fallback (fused <unk>)
  mistral         Metaspace(prepend_scheme=first, split=false), no normalizer,
                  add_bos_token and add_eos_token
  mistral-noprefix the mistral tokenizer.json, tokenizer_config.json says
                  LlamaTokenizer with add_prefix_space=false
  metaspace-always Metaspace(always, split=true) with a Metaspace decoder
  metaspace-never  Metaspace(never, split=true)
  gemma           normalizer Replace(" ", "▁"), Split(" ", MergedWithPrevious),
                  non-special added tokens for whitespace runs and HTML tags

For each configuration it records what `tokenizers` gives (ids without and
with the post-processor, and decode with skip_special_tokens) for a set of
hard strings and for the whole WikiText-2 test file as one string, and what
transformers' AutoTokenizer gives for the hard strings. Everything lands in
one archive, oracles.tar.gz, laid out as tokenizer/testdata/hf/ is.

Usage: tokenizer-oracles.py DATA_DIR OUT_DIR
DATA_DIR holds wiki.test.tokens (encoded), wiki.valid.tokens and
git-docs.txt (the training text).
"""

import array
import collections
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import tokenizers  # noqa: E402
from tokenizers import Tokenizer, pre_tokenizers, trainers  # noqa: E402

# The pre-tokenizer regexes as the published tokenizer.json files spell them.
GPT2_RE = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN35_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

SPACE = "\u2581"

WIKI_FILES = {}  # sha256 of a configuration's WikiText ids -> its name

HARD = [
    "",
    " ",
    "  ",
    "\n",
    "Hello world",
    "Hello, World! How are you today?",
    " leading space",
    "   three leading spaces",
    "trailing spaces   ",
    "multiple   spaces  between    words",
    "\n\nnewlines first\n\n\n  indented\n\t\ttabs\tinside",
    "windows\r\nline\r\n\r\nendings\r",
    "a\n \n b\n  \n\n   c",
    "   \n   \n",
    "I'm don't they're we've you'll he'd it's",
    "IT'S DON'T WE'VE YOU'LL HE'D I'M 'S 'T",
    "'s 'hello 'ſ 'Ll x'll",
    "1234567890 12 123 1234 12345 3.14159 1,000,000 -42 +7",
    "99999999999999999999999",
    "\u0661\u0662\u0663\u0664 \u00bd \u00b2 \u216b \u2460 \u0968\u0966",
    "caf\u00e9 na\u00efve Z\u00fcrich r\u00e9sum\u00e9 \u00c5ngstr\u00f6m",
    "cafe\u0301 e\u0301le\u0300ve A\u030a \u212b \u2126",
    "\ufb01le \ufb02ow \u2163 \uff21\uff22\uff23 \u00b5 \u017f",
    "\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 \U0001f1eb\U0001f1f7 \U0001f600\U0001f600",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587\u5b57\u7b26 \ud55c\uad6d\uc5b4",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \u0928\u092e\u0938\u094d\u0924\u0947 \u0915\u093f",
    "\u00a0nbsp\u2009thin\u3000ideographic\u2028line\u0085nel",
    "x\u200bzero\u200cwidth\ufeffbom",
    "\x00\x01 control \x7f \x1f\x1c",
    SPACE + " literal metaspace " + SPACE + SPACE + "x" + SPACE,
    "<0x41> <0x0A> literal byte-token text",
    "CamelCaseWords and_snake_case and kebab-case.",
    "def f(x):\n    return x**2  # comment\n\n\nclass A:\n\tpass\n",
    "https://example.com/path?q=1&r=two#frag user@example.org",
    "'''\"\"\"```---...!!!???",
    " = = Robert Boulter = = \n Robert Boulter is an English film , television and theatre actor . @-@ <unk> \n",
    "<|begin_of_text|>Hello<|end_of_text|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|endoftext|><|endoftext|> after",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n",
    "partial <|im_star and <|endof text",
    "<s>hi</s> <s> x </s>",
    "Hello <s>. world",
    "<unk> and <unk><unk>",
    "text<|assistant|>   after rstrip\n",
    "<|user|>\nquestion<|end|>\n<|assistant|>",
    "a <mask> b   <mask>c",
    "qq qqq aqq qq. (qq) xqq qq",
    "a <tag> b<tag> <tag>c",
    "<h1>Title</h1>\n\n\nPara\n\n\n\n\tx\t\ty",
    "<start_of_turn>user\nhi<end_of_turn>\n",
    "Mixed \U0001f600 emoji\u2764\ufe0f and CJK\u6f22\u5b57 with digits 2024\u5e74",
]


def log(*a):
    print(*a, flush=True)


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def skeleton(normalizer, pre_tokenizer, decoder, model):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": decoder,
        "model": model,
    }


def bpe_model(**kw):
    m = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
        "vocab": {},
        "merges": [],
    }
    m.update(kw)
    return m


def split_re(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def byte_level(add_prefix_space=False, use_regex=True, trim_offsets=True):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets, "use_regex": use_regex}


def added(id_, content, special=True, normalized=None, lstrip=False, rstrip=False, single_word=False):
    return {
        "id": id_,
        "content": content,
        "single_word": single_word,
        "lstrip": lstrip,
        "rstrip": rstrip,
        "normalized": (not special) if normalized is None else normalized,
        "special": special,
    }


def template(bos, bos_id):
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": bos, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": bos, "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }


def train(doc, lines, **trainer_kw):
    """Trains the BPE model of doc (a tokenizer.json dict) and returns the
    trained dict."""
    tok = Tokenizer.from_str(json.dumps(doc))
    trainer = trainers.BpeTrainer(show_progress=False, **trainer_kw)
    tok.train_from_iterator(lines, trainer=trainer)
    return json.loads(tok.to_str())


def legacy_merges(doc):
    m = doc["model"]["merges"]
    if m and not isinstance(m[0], str):
        for a, b in m:
            assert " " not in a and " " not in b, (a, b)
        doc["model"]["merges"] = [f"{a} {b}" for a, b in m]


def next_id(doc):
    ids = list(doc["model"]["vocab"].values()) + [a["id"] for a in doc["added_tokens"]]
    return max(ids) + 1


def add_tokens(doc, specs):
    """Appends added tokens (content, kwargs) with ids after everything."""
    for content, kw in specs:
        doc["added_tokens"].append(added(next_id(doc), content, **kw))


def build_configs(train_lines, test_text):
    configs = []  # (name, tokenizer.json dict, tokenizer_config dict, options)
    generic = "PreTrainedTokenizerFast"

    # --- GPT-2 byte-level -------------------------------------------------
    t0 = time.time()
    doc = skeleton(None, byte_level(), byte_level(add_prefix_space=True), bpe_model())
    gpt2 = train(doc, train_lines, vocab_size=4000, min_frequency=2, special_tokens=["<|endoftext|>"],
                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    gpt2["post_processor"] = byte_level(add_prefix_space=True, trim_offsets=False)
    legacy_merges(gpt2)
    log(f"gpt2 trained in {time.time() - t0:.1f}s, {len(gpt2['model']['vocab'])} tokens")
    eot = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    configs.append(("gpt2", gpt2, {"tokenizer_class": generic, **eot}, {}))
    d = json.loads(json.dumps(gpt2))
    d["pre_tokenizer"] = byte_level(add_prefix_space=True)
    configs.append(("gpt2-prefix", d, {"tokenizer_class": generic, **eot}, {}))
    configs.append(("gpt2-apsconfig", gpt2, {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True, **eot},
                    {"expect": "transformers", "wiki": False}))

    # --- Llama-3 --------------------------------------------------------------
    t0 = time.time()
    pre = {"type": "Sequence", "pretokenizers": [split_re(LLAMA3_RE), byte_level(use_regex=False)]}
    doc = skeleton(None, pre, byte_level(add_prefix_space=True), bpe_model())
    l3 = train(doc, train_lines, vocab_size=4000, min_frequency=2,
               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Whole pre-tokens that the merges do not produce in one piece: only
    # ignore_merges maps them to their own id.
    tok = Tokenizer.from_str(json.dumps(l3))
    counts = collections.Counter(p for p, _ in tok.pre_tokenizer.pre_tokenize_str(test_text))
    extra = []
    for piece, _ in counts.most_common():
        if len(piece) >= 3 and piece not in l3["model"]["vocab"] and len(tok.model.tokenize(piece)) > 1:
            extra.append(piece)
        if len(extra) == 200:
            break
    n = len(l3["model"]["vocab"])
    for i, p in enumerate(extra):
        l3["model"]["vocab"][p] = n + i
    l3["model"]["ignore_merges"] = True
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    add_tokens(l3, [(s, {"special": True, "normalized": False}) for s in specials])
    bos_id = next(a["id"] for a in l3["added_tokens"] if a["content"] == "<|begin_of_text|>")
    l3["post_processor"] = {"type": "Sequence", "processors": [
        byte_level(add_prefix_space=True, trim_offsets=False), template("<|begin_of_text|>", bos_id)]}
    log(f"llama3 trained in {time.time() - t0:.1f}s, {len(l3['model']['vocab'])} tokens, {len(extra)} whole pre-tokens")
    configs.append(("llama3", l3, {"tokenizer_class": generic, "bos_token": "<|begin_of_text|>",
                                   "eos_token": "<|end_of_text|>", "clean_up_tokenization_spaces": True}, {}))

    # --- Qwen2 ----------------------------------------------------------------
    t0 = time.time()
    pre = {"type": "Sequence", "pretokenizers": [split_re(QWEN2_RE), byte_level(use_regex=False)]}
    doc = skeleton({"type": "NFC"}, pre, byte_level(), bpe_model())
    q2 = train(doc, train_lines, vocab_size=4000, min_frequency=2,
               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    add_tokens(q2, [(s, {"special": True, "normalized": False}) for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    q2["post_processor"] = byte_level(trim_offsets=False, use_regex=False)
    log(f"qwen2 trained in {time.time() - t0:.1f}s")
    qcfg = {"tokenizer_class": generic, "bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
            "add_prefix_space": False, "errors": "replace", "split_special_tokens": False}
    configs.append(("qwen2", q2, qcfg, {}))
    d = json.loads(json.dumps(q2))
    d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = QWEN35_RE
    configs.append(("qwen35", d, qcfg, {}))
    configs.append(("qwen2-splitspecial", q2, {**qcfg, "split_special_tokens": True},
                    {"expect": "transformers", "wiki": False}))

    # --- SentencePiece-style BPE ------------------------------------------------
    t0 = time.time()
    meta = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True}
    doc = skeleton(None, meta, None, bpe_model(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    sp = train(doc, train_lines, vocab_size=3000, min_frequency=2, special_tokens=["<unk>", "<s>", "</s>"],
               limit_alphabet=100)
    sp["model"].update(unk_token="<unk>", fuse_unk=True, byte_fallback=True, ignore_merges=False)
    # Llama's layout: <unk> <s> </s>, the 256 byte tokens, then the rest.
    vocab = sp["model"]["vocab"]
    new = {}
    for tokstr, i in vocab.items():
        new[tokstr] = i if i < 3 else i + 256
    for b in range(256):
        key = f"<0x{b:02X}>"
        assert key not in vocab, key
        new[key] = 3 + b
    sp["model"]["vocab"] = dict(sorted(new.items(), key=lambda kv: kv[1]))
    log(f"sentencepiece-style trained in {time.time() - t0:.1f}s, {len(new)} tokens")

    def sp_variant(normalizer, pre_tokenizer, decoder, post=True):
        d = json.loads(json.dumps(sp))
        d["normalizer"] = normalizer
        d["pre_tokenizer"] = pre_tokenizer
        d["decoder"] = decoder
        d["post_processor"] = template("<s>", 1) if post else None
        return d

    replace_dec = {"type": "Replace", "pattern": {"String": SPACE}, "content": " "}
    sp_decoder = {"type": "Sequence", "decoders": [replace_dec, {"type": "ByteFallback"}, {"type": "Fuse"},
                                                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    legacy_norm = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": SPACE},
        {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]}
    llama_cfg = {"tokenizer_class": generic, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                 "add_bos_token": True, "add_eos_token": False, "legacy": True}

    d = sp_variant(legacy_norm, None, sp_decoder)
    legacy_merges(d)
    configs.append(("llama2", d, llama_cfg, {}))

    d = sp_variant(legacy_norm, None, sp_decoder)
    add_tokens(d, [
        ("<|endoftext|>", {"special": True, "normalized": False}),
        ("<|assistant|>", {"special": True, "normalized": False, "rstrip": True}),
        ("<|user|>", {"special": True, "normalized": False, "rstrip": True}),
        ("<|end|>", {"special": True, "normalized": False, "rstrip": True}),
        ("<mask>", {"special": True, "normalized": False, "lstrip": True}),
        ("qq", {"special": False, "normalized": False, "single_word": True}),
        ("<tag>", {"special": False, "normalized": True}),
    ])
    configs.append(("phi3", d, {**llama_cfg, "add_bos_token": False, "eos_token": "<|endoftext|>"}, {}))

    d = sp_variant(legacy_norm, None, sp_decoder)
    d["model"]["byte_fallback"] = False
    configs.append(("sp-unk", d, {"tokenizer_class": generic}, {}))

    meta_first = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False}
    d = sp_variant(None, meta_first, sp_decoder)
    configs.append(("mistral", d, {**llama_cfg, "add_eos_token": True, "legacy": False}, {}))
    configs.append(("mistral-noprefix", d, {**llama_cfg, "tokenizer_class": "LlamaTokenizer", "legacy": False,
                                            "add_prefix_space": False}, {"expect": "transformers", "wiki": False}))

    for scheme in ("always", "never"):
        m = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": scheme, "split": True}
        d = sp_variant(None, m, m, post=False)
        configs.append((f"metaspace-{scheme}", d, {"tokenizer_class": generic}, {}))

    gemma_norm = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    gemma_pre = {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False}
    gemma_dec = {"type": "Sequence", "decoders": [replace_dec, {"type": "ByteFallback"}, {"type": "Fuse"}]}
    d = sp_variant(gemma_norm, gemma_pre, gemma_dec)
    add_tokens(d, [
        ("<start_of_turn>", {"special": True, "normalized": False}),
        ("<end_of_turn>", {"special": True, "normalized": False}),
        ("\n\n", {"special": False, "normalized": False}),
        ("\n\n\n", {"special": False, "normalized": False}),
        ("\t\t", {"special": False, "normalized": False}),
        ("<h1>", {"special": False, "normalized": False}),
        ("</h1>", {"special": False, "normalized": False}),
    ])
    configs.append(("gemma", d, {"tokenizer_class": generic, "bos_token": "<s>", "eos_token": "</s>",
                                 "add_bos_token": True, "add_eos_token": False}, {}))
    return configs


def ids_blob(ids):
    a = array.array("i", ids)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def run_config(name, doc, cfg, opts, test_text, tar):
    out = {"name": name, "texts": HARD}
    with tempfile.TemporaryDirectory() as d:
        tj = os.path.join(d, "tokenizer.json")
        with open(tj, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=1)
        tok = Tokenizer.from_file(tj)
        tok.no_truncation()
        tok.no_padding()
        for a in doc["added_tokens"]:
            got = tok.token_to_id(a["content"])
            if got != a["id"]:
                log(f"  {name}: added token {a['content']!r} has id {got}, file says {a['id']}")
        encs = [tok.encode(s, add_special_tokens=False) for s in HARD]
        out["ids"] = [e.ids for e in encs]
        out["tokens"] = [e.tokens for e in encs]
        out["ids_special"] = [tok.encode(s).ids for s in HARD]
        out["decoded"] = [tok.decode(i, skip_special_tokens=True) for i in out["ids"]]
        out["expect"] = opts.get("expect", "tokenizers")
        try:
            from transformers import AutoTokenizer
            at = AutoTokenizer.from_pretrained(d)
            out["auto"] = [at.encode(s) for s in HARD]
            out["auto_plain"] = [at.encode(s, add_special_tokens=False) for s in HARD]
            out["auto_class"] = type(at).__name__
            out["auto_bos"] = at.bos_token_id
            out["auto_eos"] = at.eos_token_id
            same = sum(a == b for a, b in zip(out["auto_plain"], out["ids"]))
            log(f"  {name}: AutoTokenizer {type(at).__name__}: {same}/{len(HARD)} plain encodings equal tokenizers'")
        except Exception as e:  # recorded, not fatal
            out["auto_error"] = repr(e)
            log(f"  {name}: AutoTokenizer failed: {e!r}")
        if opts.get("wiki", True):
            t0 = time.time()
            ids = tok.encode(test_text, add_special_tokens=False).ids
            blob = ids_blob(ids)
            dec = tok.decode(ids, skip_special_tokens=True)
            sha = hashlib.sha256(blob).hexdigest()
            # Configurations that give the same ids share one file.
            owner = WIKI_FILES.setdefault(sha, name)
            out["wiki"] = {
                "file": "wikitext.ids.gz" if owner == name else f"../{owner}/wikitext.ids.gz",
                "count": len(ids),
                "ids_sha256": hashlib.sha256(blob).hexdigest(),
                "decoded_equals_text": dec == test_text,
                "decoded_sha256": hashlib.sha256(dec.encode("utf-8", "surrogatepass")).hexdigest(),
            }
            if owner == name:
                add_file(tar, f"hf/{name}/wikitext.ids.gz", gzip.compress(blob, 9, mtime=0))
            log(f"  {name}: wikitext {len(ids)} ids in {time.time() - t0:.1f}s, decode equals text: {dec == test_text}")
    add_file(tar, f"hf/{name}/tokenizer.json", json.dumps(doc, ensure_ascii=False, indent=1).encode())
    add_file(tar, f"hf/{name}/tokenizer_config.json", json.dumps(cfg, ensure_ascii=False, indent=1).encode())
    add_file(tar, f"hf/{name}/oracle.json", json.dumps(out, ensure_ascii=True).encode())


def add_file(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def main():
    data_dir, out_dir = sys.argv[1], sys.argv[2]
    test_text = read(os.path.join(data_dir, "wiki.test.tokens"))
    train_lines = read(os.path.join(data_dir, "wiki.valid.tokens")).splitlines(True)
    train_lines += read(os.path.join(data_dir, "git-docs.txt")).splitlines(True)
    versions = {"tokenizers": tokenizers.__version__, "python": sys.version.split()[0]}
    try:
        import transformers
        versions["transformers"] = transformers.__version__
    except Exception as e:
        versions["transformers"] = repr(e)
    log("versions", versions)
    os.makedirs(out_dir, exist_ok=True)
    buf = io.BytesIO()
    failed = []
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        configs = build_configs(train_lines, test_text)
        for name, doc, cfg, opts in configs:
            try:
                run_config(name, doc, cfg, opts, test_text, tar)
            except Exception:
                failed.append(name)
                log(f"{name} FAILED:\n{traceback.format_exc()}")
        manifest = {"versions": versions, "configs": [c[0] for c in configs], "failed": failed}
        add_file(tar, "hf/manifest.json", json.dumps(manifest, indent=1).encode())
    with open(os.path.join(out_dir, "oracles.tar.gz"), "wb") as f:
        f.write(buf.getvalue())
    log(f"wrote {len(buf.getvalue())} bytes; failed: {failed}")


if __name__ == "__main__":
    main()
