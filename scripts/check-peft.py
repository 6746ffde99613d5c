"""Load a LoRA adapter folder that weitiao saved with Python peft and print its logits for some texts.

Usage: python check-peft.py TEXTS.json BASE ADAPTER [ADAPTER ...]
Prints {adapter: {"logits": [[...]], "architecture": ...}}: AutoModelForSequenceClassification (or …ForTokenClassification
when the adapter's task_type is TOKEN_CLS) from BASE, PeftModel.from_pretrained(base, ADAPTER), eval mode, each text
tokenized by BASE's tokenizer and truncated to 32 tokens. test/cli/transformers-interop.test.ts compares it with weitiao.
Needs torch, transformers and peft (the machine image's wheel cache has them).
"""
import json
import sys

import torch
from peft import PeftConfig, PeftModel
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

texts = json.load(open(sys.argv[1], encoding="utf-8"))
base_dir = sys.argv[2]
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(base_dir)
out = {}
for d in sys.argv[3:]:
    cfg = PeftConfig.from_pretrained(d)
    auto = AutoModelForTokenClassification if cfg.task_type == "TOKEN_CLS" else AutoModelForSequenceClassification
    labels = json.load(open(f"{d}/config.json"))["id2label"]
    base = auto.from_pretrained(base_dir, num_labels=len(labels))
    model = PeftModel.from_pretrained(base, d).eval()
    logits = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=32, return_tensors="pt")
            logits.append(model(**enc).logits[0].tolist())
    out[d] = {"logits": logits, "architecture": type(model.base_model.model).__name__}
print(json.dumps(out))
