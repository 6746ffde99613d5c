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
    ("warmup_stable_decay", 3, {"num_decay_steps": 8}), ("warmup_stable_decay", 0, {"num_decay_steps": 25}),
    ("warmup_stable_decay", 4, {"num_decay_steps": 6, "num_stable_steps": 5, "warmup_type": "cosine", "decay_type": "linear", "min_lr_ratio": 0.1}),
    ("warmup_stable_decay", 5, {"num_decay_steps": 10, "warmup_type": "1-sqrt", "decay_type": "1-sqrt", "num_cycles": 0.5}),
    ("warmup_stable_decay", 2, {"num_decay_steps": 12, "decay_type": "cosine", "num_cycles": 1.0, "min_lr_ratio": 0.05}),
]
# reduce_lr_on_plateau: stepped with each evaluation's metric (HF Trainer calls lr_scheduler.step(metric) after an
# evaluation); the lr before each evaluation's step and after the last
METRICS = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.89, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
PLATEAU = [{}, {"patience": 2}, {"patience": 1, "factor": 0.5, "cooldown": 2}, {"patience": 0, "threshold": 0.1, "threshold_mode": "abs", "min_lr": 2e-4},
           {"patience": 1, "mode": "max", "factor": 0.3}, {"patience": 0, "factor": 0.5, "eps": 3e-4}]
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
out["plateau"] = {"metrics": METRICS, "cases": []}
for kwargs in PLATEAU:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE)
    sched = get_scheduler("reduce_lr_on_plateau", opt, scheduler_specific_kwargs=kwargs)
    lrs = [opt.param_groups[0]["lr"]]
    for m in METRICS:
        sched.step(m)
        lrs.append(opt.param_groups[0]["lr"])
    out["plateau"]["cases"].append({"kwargs": kwargs, "lr": lrs})
json.dump(out, open(sys.argv[1], "w"), indent=1)
