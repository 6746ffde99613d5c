"""Read TensorBoard event files with tensorboard's own EventAccumulator and print their scalars as JSON:
{tag: [[step, value], ...]}. test/io/tensorboard.test.ts compares it with what weitiao wrote.
Usage: python read-tensorboard.py DIR (needs the tensorboard package: the machine image's wheel cache has it)
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
