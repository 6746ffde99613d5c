"""Load folders that weitiao saved with Python transformers and print what it computes for some texts.

Usage: python check-transformers.py TEXTS.json DIR [DIR ...]
TEXTS.json is a list of strings. Prints one JSON object: {dir: {"input_ids": [...], "logits": [[...]]}}, the texts
tokenized by the folder's own tokenizer (AutoTokenizer, one text at a time, truncated to 32) and classified by
AutoModelForSequenceClassification in eval mode. test/cli/transformers-interop.test.ts compares it with weitiao.
Needs torch and transformers (the machine image's wheel cache has them: see README, Development).
"""
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

texts = json.load(open(sys.argv[1], encoding="utf-8"))
out = {}
torch.set_num_threads(2)
for d in sys.argv[2:]:
    tok = AutoTokenizer.from_pretrained(d)
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
