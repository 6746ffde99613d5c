"""Learning rates of HF's schedulers (transformers.get_scheduler, the one TrainingArguments.lr_scheduler_type picks),
step by step, written to test/fixtures/schedules/hf-schedules.json for test/train/schedule.test.ts.
Run with a Python that has torch and transformers (the machine image's wheel cache): python make-schedule-fixture.py OUT
"""
import json
import sys

import torch
import transformers
from transformers import get_scheduler

BASE, TOTAL = 1e-3, 25
CASES = [
    ("linear", 3, {}), ("linear", 0, {}), ("cosine", 3, {}), ("cosine", 0, {"num_cycles": 1.5}),
    ("cosine_with_restarts", 3, {}), ("cosine_with_restarts", 2, {"num_cycles": 3}),
    ("polynomial", 3, {}), ("polynomial", 4, {"lr_end": 1e-5, "power": 2.0}),
    ("constant", 3, {}), ("constant_with_warmup", 5, {}),
    ("inverse_sqrt", 4, {}), ("inverse_sqrt", 0, {}), ("inverse_sqrt", 2, {"timescale": 7}),
    ("cosine_with_min_lr", 3, {"min_lr": 1e-5}), ("cosine_with_min_lr", 2, {"min_lr_rate": 0.1, "num_cycles": 1.0}),
]
out = {"transformers": transformers.__version__, "base_lr": BASE, "total_steps": TOTAL, "cases": []}
for name, warmup, kwargs in CASES:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=TOTAL, scheduler_specific_kwargs=kwargs)
    lrs = []
    for _ in range(TOTAL):
        lrs.append(opt.param_groups[0]["lr"])  # the lr the update at this step uses
        opt.step()
        sched.step()
    out["cases"].append({"name": name, "warmup": warmup, "kwargs": kwargs, "lr": lrs})
json.dump(out, open(sys.argv[1], "w"), indent=1)
