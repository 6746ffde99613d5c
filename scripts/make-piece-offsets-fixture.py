"""Writes test/fixtures/ner/piece-offsets.json: HF tokenizers' character offsets of each word's pieces
(is_split_into_words, RoBERTa with add_prefix_space as run_ner), the reference for BertTokenizer.pieceSpans.
Run with a Python that has `tokenizers` and `transformers` (see README, "Checking against transformers")."""
import json, sys
from transformers import AutoTokenizer

WORDS = ["world's", "unaffable", "ＡＢＣ", "1990s", "café", "😀x", "北京", "Hello", "naïve"]
out = {}
for name in ["bert-tiny-chinese", "families/roberta-tiny", "families/xlm-roberta-tiny"]:
    kw = {"add_prefix_space": True} if "roberta-tiny" == name.split("/")[-1] else {}
    tk = AutoTokenizer.from_pretrained(f"test/fixtures/{name}", **kw)
    cases = []
    for w in WORDS:
        enc = tk([w], is_split_into_words=True, return_offsets_mapping=True, add_special_tokens=False)
        cases.append({"word": w, "tokens": tk.convert_ids_to_tokens(enc["input_ids"]), "offsets": enc["offset_mapping"]})
    out[name] = cases
json.dump({"transformers": __import__("transformers").__version__, "cases": out}, sys.stdout, ensure_ascii=False, indent=1)
