#!/usr/bin/env python3
# agreement_search.py - the search behind docs/router-outcomes.md ("Agreement
# cascades"): on a RouterBench multiple-choice table (as `dynrag dataset routerbench`
# writes it, answers decoded), every cascade that calls cheap models in order and
# accepts the choice letter once it leads the others by `margin` votes (plain or
# accuracy-weighted), else pays for the strong model and takes its answer (or a vote
# that includes it). Prints the best policies within a cost budget (a share of
# always-strong's cost), with their quality and cost share.
#   python3 bench/agreement_search.py rb/arc_challenge_train.jsonl [--budget 0.5]
#       [--strong gpt-4-1106-preview] [--max-models 5] [--cheap-share 0.15]
import argparse, collections, itertools, json, math, re, sys

ap = argparse.ArgumentParser()
ap.add_argument('table')
ap.add_argument('--budget', type=float, default=0.5)
ap.add_argument('--strong', default='gpt-4-1106-preview')
ap.add_argument('--max-models', type=int, default=5)
ap.add_argument('--cheap-share', type=float, default=0.15,
                help='a cheap model costs at most this share of the strong one')
args = ap.parse_args()

rows = [json.loads(l) for l in open(args.table)]
models = list(rows[0]['outcomes'].keys())
G = args.strong
if G not in models:
    sys.exit('%s: no option %s' % (args.table, G))


def letter(resp):
    """The choice letter of an answer, as the agreement judge reads it (roughly)."""
    s = (resp or '').strip()
    m = re.match(r'^(?:the answer is|answer is|answer:)?\s*\(?([A-Z])(?:\)|\.|:)?(?:\s|$)', s, re.I)
    return m.group(1) if m else None


L = {m: [letter(r['outcomes'][m].get('response')) for r in rows] for m in models}
# The right letter: the one given by the models scored correct.
right = []
for i, r in enumerate(rows):
    c = [L[m][i] for m in models if r['outcomes'][m]['quality'] > 0 and L[m][i]]
    right.append(collections.Counter(c).most_common(1)[0][0] if c else None)
cost = {m: sum(r['outcomes'][m]['cost_usd'] for r in rows) for m in models}
cheap = [m for m in models if m != G and cost[m] <= args.cheap_share * cost[G]]
acc = {m: sum(r['outcomes'][m]['quality'] for r in rows) / len(rows) for m in models}
w = {m: math.log(min(max(acc[m], 0.3), 0.99) / (1 - min(max(acc[m], 0.3), 0.99)) * 3) for m in models}
print('%d rows; %s: quality %.4f; cheap models: %s' % (len(rows), G, acc[G], ', '.join(cheap)),
      file=sys.stderr)


def run(order, margin, weights, final_vote):
    q = c = 0.0
    for i, r in enumerate(rows):
        votes = collections.Counter()
        ans = None
        for m in order:
            c += r['outcomes'][m]['cost_usd']
            if L[m][i]:
                votes[L[m][i]] += weights[m] if weights else 1
            top = votes.most_common(2)
            lead = (top[0][1] - (top[1][1] if len(top) > 1 else 0)) if top else 0
            if lead >= margin:
                ans = top[0][0]
                break
        if ans is None:
            c += r['outcomes'][G]['cost_usd']
            if final_vote and L[G][i]:
                votes[L[G][i]] += weights[G] if weights else 1
                ans = votes.most_common(1)[0][0]
            else:
                q += r['outcomes'][G]['quality']
                continue
        q += ans == right[i]
    return q / len(rows), c / cost[G]


best = []
combos = [o for n in range(1, args.max_models + 1) for o in itertools.combinations(cheap, n)]
for k, combo in enumerate(combos):
    if k % 50 == 0:
        print('\r%d / %d model sets' % (k, len(combos)), end='', file=sys.stderr, flush=True)
    order = sorted(combo, key=lambda m: -w[m])  # the most accurate first
    for margin in range(1, len(order) + 1):
        for fv in (False, True):
            qq, cs = run(order, margin, None, fv)
            if cs <= args.budget:
                best.append((qq, -cs, 'votes, lead %d%s' % (margin, ', strong votes' if fv else ''), order))
    for thr in [x / 4 for x in range(4, 40)]:
        qq, cs = run(order, thr, w, False)
        if cs <= args.budget:
            best.append((qq, -cs, 'weighted votes, lead %.2f' % thr, order))
print('\r%d / %d model sets' % (len(combos), len(combos)), file=sys.stderr)
best.sort(reverse=True)
seen = set()
for qq, ncs, rule, order in best:
    key = (round(qq, 6), tuple(sorted(order)))
    if key in seen:
        continue
    seen.add(key)
    print('%.4f @ %3.0f%%  %s: %s' % (qq, -100 * ncs, rule, ' -> '.join(order)))
    if len(seen) == 10:
        break
print('always %s: %.4f @ 100%%' % (G, acc[G]))
