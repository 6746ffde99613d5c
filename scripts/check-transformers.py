"""Load folders that weitiao saved with Python transformers and print what it computes for some texts.

Usage: python check-transformers.py TEXTS.json DIR [DIR ...]
TEXTS.json is a list of strings. Prints one JSON object: {dir: {"input_ids": [...], "logits": [[...]]}}, the texts
tokenized by the folder's own tokenizer (AutoTokenizer, one text at a time, truncated to 32) and classified by
AutoModelForSequenceClassification in eval mode; a folder whose architectures is a …ForTokenClassification gets
AutoModelForTokenClassification on each text's characters as words (is_split_into_words) and prints each word's tag
and its probability instead of logits; a …ForMaskedLM folder gets the fill-mask pipeline (top_k 5) on each text with
"{mask}" replaced by the tokenizer's mask token, and prints the texts and the pipeline's results.
test/cli/transformers-interop.test.ts compares it with weitiao.
Needs torch and transformers (the machine image's wheel cache has them: see README, Development).
"""
import json
import sys

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer, pipeline

texts = json.load(open(sys.argv[1], encoding="utf-8"))
out = {}
torch.set_num_threads(2)
for d in sys.argv[2:]:
    config = AutoConfig.from_pretrained(d)
    # Byte-level BPE words take a leading space (run_ner's add_prefix_space=True), as weitiao encodes them
    tok = AutoTokenizer.from_pretrained(d, **({"add_prefix_space": True} if config.model_type == "roberta" else {}))
    if config.architectures[0].endswith("ForMaskedLM"):
        model = AutoModelForMaskedLM.from_pretrained(d).eval()
        fill = pipeline("fill-mask", model=model, tokenizer=AutoTokenizer.from_pretrained(d), top_k=5)
        masked = [t.replace("{mask}", fill.tokenizer.mask_token) for t in texts if "{mask}" in t]
        results = [fill(t) for t in masked]
        out[d] = {"texts": masked, "results": results, "architecture": type(model).__name__}
        continue
    if config.architectures[0].endswith("ForTokenClassification"):
        model = AutoModelForTokenClassification.from_pretrained(d).eval()
        tags, scores = [], []
        with torch.no_grad():
            for t in texts:
                words = list(t)
                enc = tok(words, is_split_into_words=True, truncation=True, max_length=512, return_tensors="pt")
                probs = model(**{k: v for k, v in enc.items()}).logits[0].softmax(-1)
                word_tags, word_scores, prev = ["O"] * len(words), [0.0] * len(words), None
                for k, w in enumerate(enc.word_ids()):
                    if w is not None and w != prev:
                        word_tags[w] = model.config.id2label[int(probs[k].argmax())]
                        word_scores[w] = float(probs[k].max())
                    prev = w
                tags.append(word_tags)
                scores.append(word_scores)
        out[d] = {"tags": tags, "scores": scores, "architecture": type(model).__name__}
        continue
    model = AutoModelForSequenceClassification.from_pretrained(d)
    model.eval()
    ids, logits = [], []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=32, return_tensors="pt")
            ids.append(enc["input_ids"][0].tolist())
            logits.append(model(**enc).logits[0].tolist())
    out[d] = {"input_ids": ids, "logits": logits, "architecture": type(model).__name__}
print(json.dumps(out))
