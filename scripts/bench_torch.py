"""PyTorch twin of `weitiao bench`: the same random BERT-base (or roberta-base, --family) workload, timed the same way
(median of N steps after one warm-up). A plain-torch BertForSequenceClassification or RobertaForSequenceClassification
(transformers is not installed beside the apt torch), structurally the same module graph as HF's eager implementation. Prints JSON lines. Run by `weitiao bench --compare-torch` with
OPENBLAS_CORETYPE=SkylakeX set for this process only.
"""
import argparse
import json
import math
import os
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Layer(nn.Module):
    def __init__(self, h, heads, inter, p, eps):
        super().__init__()
        self.heads, self.p = heads, p
        self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(h, eps=eps), nn.LayerNorm(h, eps=eps)
        self.i, self.out = nn.Linear(h, inter), nn.Linear(inter, h)

    def forward(self, x, mask):
        b, t, h = x.shape
        d = h // self.heads
        split = lambda y: y.view(b, t, self.heads, d).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        s = q @ k.transpose(-1, -2) / math.sqrt(d) + mask
        a = F.dropout(s.softmax(-1), self.p, self.training)
        ctx = (a @ v).transpose(1, 2).reshape(b, t, h)
        x = self.ln1(F.dropout(self.o(ctx), self.p, self.training) + x)
        return self.ln2(F.dropout(self.out(F.gelu(self.i(x))), self.p, self.training) + x)


class LoraLinear(nn.Module):
    """peft's lora.Linear: base(x) + lora_B(lora_A(dropout(x))) * alpha / r, A kaiming-uniform, B zero, base frozen."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base, self.scaling = base, alpha / r
        self.lora_A, self.lora_B = nn.Linear(base.in_features, r, bias=False), nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


# The two shapes `weitiao bench --family` times: vocabulary, position table, token types, padding id, LayerNorm eps.
FAMILIES = {"bert": dict(vocab=21128, positions=512, types=2, pad=0, eps=1e-12),
            "roberta": dict(vocab=50265, positions=514, types=1, pad=1, eps=1e-5)}


class Bert(nn.Module):
    """BertForSequenceClassification (pooler → dropout → classifier), or with family "roberta"
    RobertaForSequenceClassification: positions counted from padding_idx + 1 over the real tokens
    (create_position_ids_from_input_ids), no pooler, dropout → dense → tanh → dropout → out_proj on <s>."""

    def __init__(self, family="bert", h=768, layers=12, inter=3072, labels=2, p=0.1, ner=False, mlm=False):
        super().__init__()
        f = FAMILIES[family]
        self.roberta, self.pad, self.ner, self.mlm = family == "roberta", f["pad"], ner, mlm
        self.bert = nn.Module()
        self.bert.word = nn.Embedding(f["vocab"], h, padding_idx=f["pad"])
        self.bert.pos, self.bert.tok = nn.Embedding(f["positions"], h), nn.Embedding(f["types"], h)
        self.bert.ln = nn.LayerNorm(h, eps=f["eps"])
        self.bert.layers = nn.ModuleList(Layer(h, h // 64, inter, p, f["eps"]) for _ in range(layers))
        if mlm:  # BertForMaskedLM: transform (dense → gelu → LayerNorm) → decoder tied to the word embedding, every position
            self.transform, self.transform_ln = nn.Linear(h, h), nn.LayerNorm(h, eps=f["eps"])
            self.mlm_bias = nn.Parameter(torch.zeros(f["vocab"]))
        elif ner:  # …ForTokenClassification: dropout → classifier on every token, no pooler
            self.classifier = nn.Linear(h, labels)
        elif self.roberta:
            self.dense, self.out_proj = nn.Linear(h, h), nn.Linear(h, labels)
        else:
            self.bert.pool = nn.Linear(h, h)
            self.classifier = nn.Linear(h, labels)
        self.p = p

    def forward(self, ids, mask):
        b, t = ids.shape
        if self.roberta:
            real = ids.ne(self.pad).int()
            pos = (torch.cumsum(real, dim=1) * real).long() + self.pad
        else:
            pos = torch.arange(t)
        e = self.bert.word(ids) + self.bert.pos(pos) + self.bert.tok(torch.zeros_like(ids))
        x = F.dropout(self.bert.ln(e), self.p, self.training)
        m = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.bert.layers:
            x = layer(x, m)
        if self.mlm:
            # .float(): torch 2's autocast runs layer_norm in fp32; 1.13's CPU autocast would pass it bf16 input with fp32 weights
            return F.linear(self.transform_ln(F.gelu(self.transform(x)).float()), self.bert.word.weight, self.mlm_bias)
        if self.ner:
            return self.classifier(F.dropout(x, self.p, self.training))
        if self.roberta:
            d = torch.tanh(self.dense(F.dropout(x[:, 0], self.p, self.training)))
            return self.out_proj(F.dropout(d, self.p, self.training))
        pooled = torch.tanh(self.bert.pool(x[:, 0]))
        return self.classifier(F.dropout(pooled, self.p, self.training))


def varlen_lengths(seq, count):
    """train_bf16_varlen's lengths, as varlenLengths() in src/bench/bench.ts makes them."""
    offsets = [0, 8, 16, 4, 24, 0, 12, 20]
    return [max(1, seq - offsets[i % len(offsets)]) for i in range(count)]


def padded_lengths(seq, batch):
    """train_bf16_padded's real tokens per row, as paddedLengths() in src/bench/bench.ts makes them."""
    shortest = max(1, seq // 4)
    return [seq - (i * (seq - shortest)) // (batch - 1) if batch > 1 else seq for i in range(batch)]


def timed(steps, fn):
    fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--infer-batch", type=int, default=64)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", default="")
    ap.add_argument("--family", default="bert", choices=sorted(FAMILIES))
    ap.add_argument("--task", default="text-classification", choices=["text-classification", "token-classification"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)  # its default here is 1
    torch.manual_seed(0)
    only = set(a.only.split(",")) if a.only else None
    want = lambda n: only is None or n in only
    vocab, pad = FAMILIES[a.family]["vocab"], FAMILIES[a.family]["pad"]
    ids = torch.randint(1000, vocab, (a.batch, a.seq))
    mask = torch.ones_like(ids)
    ner = a.task == "token-classification"
    labels = torch.arange(a.batch) % 2

    def token_labels(b, t):
        """tokenLabels() of src/bench/bench.ts: (i·7) mod 9 over the flat positions, −100 at each row's first and last."""
        i = torch.arange(b * t).view(b, t)
        y = (i * 7) % 9
        y[:, 0] = -100
        y[:, -1] = -100
        return y

    def loss_of(logits, x):
        if ner:
            return F.cross_entropy(logits.reshape(-1, 9), token_labels(*x.shape).reshape(-1), ignore_index=-100)
        return F.cross_entropy(logits, labels)

    def emit(name, sec, batch):
        print(json.dumps({"name": name, "median_s": sec, "samples_per_s": batch / sec if sec else 0, "steps": a.steps,
                          "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)

    # train_bf16_varlen: dynamic padding, a different sequence length every step
    batches = [torch.randint(1000, vocab, (a.batch, t)) for t in varlen_lengths(a.seq, a.steps + 1)]
    # train_bf16_padded: one batch padded to its longest row, as HF's DataCollatorWithPadding makes it
    padded_mask = torch.zeros_like(ids)
    padded_ids = ids.clone()
    for b, n in enumerate(padded_lengths(a.seq, a.batch)):
        padded_mask[b, :n] = 1
        padded_ids[b, n:] = pad
    for name, autocast, varlen in (("train_fp32", False, False), ("train_bf16_autocast", True, False),
                                   ("train_bf16_autocast_varlen", True, True), ("train_bf16_autocast_padded", True, False)):
        if not want(name.replace("_autocast", "")):
            continue
        model = Bert(a.family, labels=9 if ner else 2, ner=ner, h=a.hidden, layers=a.layers, inter=4 * a.hidden).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
        calls = iter(range(a.steps + 1))

        def step():
            x = batches[next(calls)] if varlen else padded_ids if name.endswith("_padded") else ids
            m = padded_mask if name.endswith("_padded") else torch.ones_like(x)
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = loss_of(model(x, m), x)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        emit(name, timed(a.steps, step), a.batch)
        del model, opt

    # train_mlm: masked-LM pretraining as HF computes it, logits for every position, the loss over the masked ones
    # (mlmPositions() of src/bench/bench.ts: (i·7919) mod 100 < 15, never a row's first or last token)
    flat = torch.arange(a.batch * a.seq)
    masked = ((flat * 7919) % 100 < 15) & (flat % a.seq != 0) & (flat % a.seq != a.seq - 1)
    mlm_labels = torch.where(masked, ids.reshape(-1), torch.full_like(flat, -100))
    mlm_ids = torch.where(masked.view(a.batch, a.seq), torch.full_like(ids, 103), ids)
    for name, autocast in (("train_mlm_fp32", False), ("train_mlm_bf16_autocast", True)):
        if not want(name.replace("_autocast", "")) or a.family != "bert":
            continue
        model = Bert(a.family, mlm=True, h=a.hidden, layers=a.layers, inter=4 * a.hidden).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)

        def mlm_step():
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(mlm_ids, mask)
            F.cross_entropy(logits.float().reshape(-1, vocab), mlm_labels, ignore_index=-100).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        emit(name, timed(a.steps, mlm_step), a.batch)
        del model, opt

    if want("train_lora_fp32"):
        # PEFT's LoRA in plain torch (lora.Linear's math): r 8, alpha 8 on query and value, the base frozen, the head trained
        model = Bert(a.family, labels=9 if ner else 2, ner=ner, h=a.hidden, layers=a.layers, inter=4 * a.hidden).train()
        for p in model.parameters():
            p.requires_grad = False
        head = [model.classifier] if ner or not model.roberta else [model.dense, model.out_proj]
        for m in head:
            for p in m.parameters():
                p.requires_grad = True
        for layer in model.bert.layers:
            for name in ("q", "v"):
                setattr(layer, name, LoraLinear(getattr(layer, name), r=8, alpha=8))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, weight_decay=0.01)

        def lora_step():
            opt.zero_grad()
            loss_of(model(ids, mask), ids).backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()

        emit("train_lora_fp32", timed(a.steps, lora_step), a.batch)
        del model, opt

    if want("head_only_cached") and not ner:
        # The tutorial's frozen encoder: requires_grad False, model.train(), the encoder still runs every step.
        model = Bert(a.family, labels=9 if ner else 2, ner=ner, h=a.hidden, layers=a.layers, inter=4 * a.hidden).train()
        for p in model.bert.parameters():
            p.requires_grad = False
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, weight_decay=0.01)

        def head_step():
            opt.zero_grad()
            F.cross_entropy(model(ids, mask), labels).backward()
            opt.step()

        emit("head_only", timed(a.steps, head_step), a.batch)
        del model, opt

    for name, autocast in (("infer_fp32", False), ("infer_bf16_autocast", True)):
        if not want(name.replace("_autocast", "")):
            continue
        model = Bert(a.family, labels=9 if ner else 2, ner=ner, h=a.hidden, layers=a.layers, inter=4 * a.hidden).eval()
        big = torch.randint(1000, vocab, (a.infer_batch, a.seq))
        bmask = torch.ones_like(big)

        def infer():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                model(big, bmask)

        emit(name, timed(a.steps, infer), a.infer_batch)
        del model
    print(json.dumps({"name": "peak_rss", "median_s": 0, "samples_per_s": 0, "steps": 0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


if __name__ == "__main__":
    main()
