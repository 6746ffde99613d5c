"""Writes test/fixtures/bert-tiny-chinese-legacy-bin/pytorch_model.bin: the fixture's weights re-saved by
torch in its legacy (pre-1.6, non-zip) serialization, the format of many older hub checkpoints.

    /usr/bin/python3 scripts/make-legacy-fixture.py      (Debian python3-torch 1.13)
"""
import os
import shutil

import torch

src = "test/fixtures/bert-tiny-chinese-pytorch-bin"
dst = "test/fixtures/bert-tiny-chinese-legacy-bin"
os.makedirs(dst, exist_ok=True)
state = torch.load(os.path.join(src, "pytorch_model.bin"), map_location="cpu")
torch.save(state, os.path.join(dst, "pytorch_model.bin"), _use_new_zipfile_serialization=False)
for f in ("config.json", "vocab.txt"):
    shutil.copy(os.path.join(src, f), os.path.join(dst, f))
print("wrote", dst, len(state), "tensors")

# A small state dict with a strided view and a float16 tensor, in both formats, for the reader's layout handling.
views = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1.5, 2.5], dtype=torch.float16)}
views["c"] = views["a"][:, 1]  # shares a's storage: offset 1, stride 3
views["d"] = views["a"].view(-1)[2:5]  # shares a's storage: contiguous from offset 2
torch.save(views, "test/fixtures/torch-views-legacy.bin", _use_new_zipfile_serialization=False)
torch.save(views, "test/fixtures/torch-views-zip.bin")
print("wrote test/fixtures/torch-views-{legacy,zip}.bin")
