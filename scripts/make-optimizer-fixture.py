"""Parameters after each of 6 updates of HF's --optim choices other than AdamW, computed by torch.optim.SGD, Adagrad,
RMSprop and transformers' Adafactor (as HF Trainer builds each: param groups with weight decay for the matrix, none
for the bias; Adafactor with scale_parameter and relative_step off), on fixed parameters and gradients. Written to
test/fixtures/optimizers/torch-optimizers.json for test/train/optimizers.test.ts.
Run with a Python that has torch and transformers (the machine image's wheel cache): python make-optimizer-fixture.py OUT
"""
import json
import sys

import torch
import transformers
from transformers.optimization import Adafactor

LR, WD, STEPS = 0.01, 0.1, 6
CASES = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}), ("sgd", {"momentum": 0.8, "dampening": 0.3}),
    ("adagrad", {}), ("adagrad", {"lr_decay": 0.05, "eps": 1e-6}),
    ("rmsprop", {}), ("rmsprop", {"momentum": 0.9, "alpha": 0.9}), ("rmsprop", {"centered": True, "eps": 1e-6}),
    ("adafactor", {}),
]
g = torch.Generator().manual_seed(7)
w0 = torch.randn(3, 4, generator=g)
b0 = torch.randn(5, generator=g)
grads = [(torch.randn(3, 4, generator=g) * (1 + s), torch.randn(5, generator=g) * 0.5) for s in range(STEPS)]
out = {"torch": torch.__version__, "transformers": transformers.__version__, "lr": LR, "weight_decay": WD,
       "w0": w0.flatten().tolist(), "b0": b0.tolist(), "grads": [[gw.flatten().tolist(), gb.tolist()] for gw, gb in grads], "cases": []}
for name, args in CASES:
    w, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    groups = [{"params": [w], "weight_decay": WD}, {"params": [b], "weight_decay": 0.0}]
    if name == "sgd":
        opt = torch.optim.SGD(groups, lr=LR, **args)
    elif name == "adagrad":
        opt = torch.optim.Adagrad(groups, lr=LR, **args)
    elif name == "rmsprop":
        opt = torch.optim.RMSprop(groups, lr=LR, **args)
    else:
        opt = Adafactor(groups, lr=LR, scale_parameter=False, relative_step=False)
    after = []
    for gw, gb in grads:
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        after.append([w.detach().flatten().tolist(), b.detach().tolist()])
    out["cases"].append({"optim": name, "args": args, "after": after})
json.dump(out, open(sys.argv[1], "w"), indent=1)
