#!/usr/bin/env python3
# task_identity.py - the task-identity baseline of docs/router-outcomes.md: route
# every query of a task to the model that is best on that task's training rows
# (the router is told the task: an upper bound for routing by task alone), scored
# on the held-out 20% of each task, over 20 seeded random splits.
#   python3 bench/task_identity.py rdc/mmlu_train.jsonl rdc/gsm8k-train.jsonl ...
import json, random, statistics, sys
files = sorted(sys.argv[1:])  # the same splits whatever the order given
tasks = {f: [json.loads(l) for l in open(f)] for f in files}
models = list(next(iter(tasks.values()))[0]['outcomes'].keys())
res = []
for seed in range(20):
    rng = random.Random(seed); accs = []
    for rows in tasks.values():
        idx = list(range(len(rows))); rng.shuffle(idx); nv = len(rows) // 5
        va = [rows[i] for i in idx[:nv]]; tr = [rows[i] for i in idx[nv:]]
        best = max(models, key=lambda m: sum(r['outcomes'][m]['quality'] for r in tr))
        accs.append(sum(r['outcomes'][best]['quality'] for r in va) / len(va))
    res.append(statistics.mean(accs))
print('task identity: mean %.4f, sd %.4f over %d splits' % (statistics.mean(res), statistics.stdev(res), len(res)))
