#!/usr/bin/python3
"""Independent NumPy reference for the DynamicRAG T5 classifier (src/nn/).

Writes, next to this script:
  tiny.safetensors   a tiny model whose weights come from a closed-form
                     formula (no random seed), in the format of
                     docs/weights-format.md, with a hand-written tokenizer
  tiny_golden.json   texts, the token ids this script's own BPE gives them,
                     and the logits of every head computed in float64

tests/test_nn.c (nn_golden_forward) loads both with the C code and checks
the ids exactly and the logits within 1e-4. Run: python3 tests/golden/t5_reference.py
Needs only python3 and numpy (Debian: python3-numpy).
"""
import json
import math
import os
import struct
import unicodedata  # noqa: F401  (normalisation below is explicit, not NFKC)

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

CFG = dict(d_model=16, n_layers=2, n_heads=2, d_ff=24, max_len=16, num_buckets=8,
           max_distance=20, length_buckets=4)
HEADS = [{"name": "complexity", "labels": ["A", "B", "C"]},
         {"name": "other", "labels": ["x", "y"]}]


# ---- tokenizer (byte-level BPE as described in src/nn/tokenizer.h) ----------

def byte_id(b):
    return 1 + b


def make_merges():
    """A handful of merges written by hand; ids 257.. in order."""
    merges = []
    ids = {}

    def merge(a, b, name):
        merges.append([a, b])
        ids[name] = 257 + len(merges) - 1
        return ids[name]

    sp = byte_id(ord(' '))
    w = merge(sp, byte_id(ord('w')), " w")
    wh = merge(w, byte_id(ord('h')), " wh")
    merge(wh, byte_id(ord('o')), " who")
    th = merge(byte_id(ord('t')), byte_id(ord('h')), "th")
    merge(th, byte_id(ord('e')), "the")
    sp_t = merge(sp, byte_id(ord('t')), " t")
    merge(sp_t, byte_id(ord('h')), " th")
    merge(byte_id(ord('e')), byte_id(ord('r')), "er")
    merge(byte_id(ord('i')), byte_id(ord('n')), "in")
    merge(sp, byte_id(ord('c')), " c")
    merge(byte_id(ord('a')), byte_id(ord('f')), "af")
    merge(byte_id(ord('1')), byte_id(ord('9')), "19")
    return merges


LATIN1 = ["a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
          "d", "n", "o", "o", "o", "o", "o", None, "o", "u", "u", "u", "u", "y", "th", "ss",
          "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
          "d", "n", "o", "o", "o", "o", "o", None, "o", "u", "u", "u", "u", "y", "th", "y"]


STRIP = "?"  # the tokenizer's "strip" set: ASCII punctuation deleted


def normalise(text):
    out = bytearray()
    for ch in text:
        cp = ord(ch)
        if cp < 0x80 and ch in STRIP:
            continue
        if cp < 0x80:
            out += ch.lower().encode() if 'A' <= ch <= 'Z' else ch.encode()
        elif 0xC0 <= cp <= 0xFF and LATIN1[cp - 0xC0] is not None:
            out += LATIN1[cp - 0xC0].encode()
        else:
            out += ch.encode("utf-8")
    return bytes(out)


def byte_class(c):
    if c in b" \t\n\r\v\f":
        return "space"
    if (ord('a') <= c <= ord('z')) or (ord('A') <= c <= ord('Z')) or c >= 0x80:
        return "letter"
    if ord('0') <= c <= ord('9'):
        return "digit"
    return "punct"


def pieces(s):
    i, space, n = 0, True, len(s)
    while i < n:
        cl = byte_class(s[i])
        if cl == "space":
            space = True
            i += 1
            continue
        j = i + 1
        if cl != "punct":
            while j < n and j - i < 64 and byte_class(s[j]) == cl:
                j += 1
        yield s[i:j], space
        space = False
        i = j


def count_words(text):
    return sum(1 for p, _ in pieces(normalise(text)) if byte_class(p[0]) != "punct")


def encode(text, merges, max_len, vocab_size, length_buckets):
    """Length token (model.h) then BPE ids."""
    lead = []
    if length_buckets > 0:
        lead = [vocab_size - length_buckets + min(count_words(text) // 2, length_buckets - 1)]
        max_len -= 1
    rank = {}
    for r, (a, b) in enumerate(merges):
        rank.setdefault((a, b), r)
    ids = []
    for p, space in pieces(normalise(text)):
        sym = ([byte_id(32)] if space else []) + [byte_id(b) for b in p]
        while True:
            best = None
            for i in range(len(sym) - 1):
                r = rank.get((sym[i], sym[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            r, i = best
            sym[i:i + 2] = [257 + r]
        ids += sym
        if len(ids) >= max_len:
            break
    ids = lead + ids[:max_len]
    return ids if ids else [0]


# ---- weights ------------------------------------------------------------------

def tensor_list(cfg, V):
    C, F, NH = cfg["d_model"], cfg["d_ff"], cfg["n_heads"]
    t = [("shared.weight", (V, C)),
         ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
          (cfg["num_buckets"], NH))]
    for l in range(cfg["n_layers"]):
        p = "encoder.block.%d." % l
        t.append((p + "layer.0.layer_norm.weight", (C,)))
        for m in "qkvo":
            t.append((p + "layer.0.SelfAttention.%s.weight" % m, (C, C)))
        t.append((p + "layer.1.layer_norm.weight", (C,)))
        t.append((p + "layer.1.DenseReluDense.wi_0.weight", (F, C)))
        t.append((p + "layer.1.DenseReluDense.wi_1.weight", (F, C)))
        t.append((p + "layer.1.DenseReluDense.wo.weight", (C, F)))
    t.append(("encoder.final_layer_norm.weight", (C,)))
    for h, head in enumerate(HEADS):
        K = len(head["labels"])
        t.append(("heads.%d.weight" % h, (K, C)))
        t.append(("heads.%d.bias" % h, (K,)))
    return t


def formula(k, shape):
    """Deterministic, seed-free values in about [-1, 1] / sqrt(fan-in)."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    v = np.sin(0.7 * i + 1.3 * k + 0.1) * np.cos(0.13 * i * (k % 5 + 1))
    if len(shape) == 2:
        v = v / math.sqrt(shape[1]) * 1.5
    else:
        v = 1.0 + 0.3 * v  # norms around one, biases around one as well
    return v.reshape(shape).astype(np.float32)


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    off = 0
    blobs = []
    for name, arr in tensors:
        b = arr.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- forward pass (float64) ------------------------------------------------------

def bucket(rel, nb, md):
    nb //= 2
    ret = nb if rel > 0 else 0
    n = abs(rel)
    max_exact = nb // 2
    if n < max_exact:
        return ret + n
    v = max_exact + int(math.log(n / max_exact) / math.log(md / max_exact) * (nb - max_exact))
    return ret + min(v, nb - 1)


def rmsnorm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * w


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(W, cfg, ids):
    C, NH, L = cfg["d_model"], cfg["n_heads"], cfg["n_layers"]
    hs = C // NH
    T = len(ids)
    x = W["shared.weight"][ids].astype(np.float64)  # [T, C]
    rb = W["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    bias = np.zeros((NH, T, T))
    for i in range(T):
        for j in range(T):
            bias[:, i, j] = rb[bucket(j - i, cfg["num_buckets"], cfg["max_distance"])]
    for l in range(L):
        p = "encoder.block.%d." % l
        h = rmsnorm(x, W[p + "layer.0.layer_norm.weight"])
        q = h @ W[p + "layer.0.SelfAttention.q.weight"].T
        k = h @ W[p + "layer.0.SelfAttention.k.weight"].T
        v = h @ W[p + "layer.0.SelfAttention.v.weight"].T
        out = np.zeros((T, C))
        for a in range(NH):
            sl = slice(a * hs, (a + 1) * hs)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(hs) + bias[a]
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            out[:, sl] = s @ v[:, sl]
        x = x + out @ W[p + "layer.0.SelfAttention.o.weight"].T
        h = rmsnorm(x, W[p + "layer.1.layer_norm.weight"])
        g = gelu(h @ W[p + "layer.1.DenseReluDense.wi_0.weight"].T) * \
            (h @ W[p + "layer.1.DenseReluDense.wi_1.weight"].T)
        x = x + g @ W[p + "layer.1.DenseReluDense.wo.weight"].T
    x = rmsnorm(x, W["encoder.final_layer_norm.weight"])
    pooled = x.mean(axis=0)
    return [(W["heads.%d.weight" % h] @ pooled + W["heads.%d.bias" % h]).tolist()
            for h in range(len(HEADS))]


TEXTS = [
    "Who wrote the theory of relativity?",
    "hello",
    "",
    "   ",
    "Where was the café owner born in 1987, and who else lived there?",
    "ÉTÉ naïve Ünïcödé façade Straße",
    "日本の首都はどこですか 🙂",
    "what's 12+7?!",
    "the the the the the the the the the the the the the the the the the the the the",
]


def main():
    merges = make_merges()
    # a few unused ids (the vocabulary may exceed the tokenizer), then the length tokens
    V = 257 + len(merges) + 3 + CFG["length_buckets"]
    cfg = dict(CFG, vocab_size=V)
    W = {}
    tensors = []
    for k, (name, shape) in enumerate(tensor_list(cfg, V)):
        W[name] = formula(k, shape)
        tensors.append((name, W[name]))
    tok = {"type": "bpe-bytes", "version": 1, "normalize": "lower+latin1", "strip": STRIP,
           "merges": merges}
    meta = {"format": "dynrag-t5-classifier", "format_version": "1",
            "config": json.dumps(cfg), "heads": json.dumps(HEADS), "tokenizer": json.dumps(tok),
            "provenance": json.dumps({"trainer": "tests/golden/t5_reference.py (formula weights)"})}
    write_safetensors(os.path.join(HERE, "tiny.safetensors"), tensors, meta)
    cases = []
    for t in TEXTS:
        ids = encode(t, merges, cfg["max_len"], V, cfg["length_buckets"])
        W64 = {n: a.astype(np.float64) for n, a in W.items()}
        cases.append({"text": t, "ids": ids, "logits": forward(W64, cfg, ids)})
    with open(os.path.join(HERE, "tiny_golden.json"), "w") as f:
        json.dump({"model": "tiny.safetensors", "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote tiny.safetensors and tiny_golden.json (%d cases)" % len(cases))


if __name__ == "__main__":
    main()
