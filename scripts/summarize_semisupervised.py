#!/usr/bin/env python3
"""Summarises the runs of scripts/semisupervised_experiment.sh: the last epoch of every
<out>/<model>_<labels>_seed<k>/results.csv, as mean ± sd (sample sd, n-1) over seeds of the test error of
q(y|x) and of the pixel softmax-regression floor on the same labels. Writes <out>/summary.csv and prints a
Markdown table. Standard library only."""
import csv
import glob
import os
import statistics
import sys


def main(out):
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "*_seed*", "results.csv"))):
        if not os.path.exists(os.path.join(os.path.dirname(path), "done")):
            continue  # unfinished run
        with open(path, newline="") as f:
            last = list(csv.DictReader(f))[-1]
        rows.append(last)
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    groups = {}
    for r in rows:
        groups.setdefault((int(r["labels"]), r["model"]), []).append(r)

    def ms(values):
        values = [100 * float(v) for v in values]
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        return f"{statistics.mean(values):.2f} ± {sd:.2f}"

    labels = sorted({k[0] for k in groups})
    models = sorted({k[1] for k in groups}, key=lambda m: (m != "siddharth", m))
    print("| labels | " + " | ".join(f"{m} test error (%)" for m in models) + " | pixel softmax floor (%) | seeds |")
    print("|---:|" + "---:|" * len(models) + "---:|---:|")
    for n in labels:
        cells, floors, seeds = [], [], set()
        for m in models:
            g = groups.get((n, m), [])
            cells.append(ms([r["test_error"] for r in g]) if g else "—")
            floors += [r["floor_test_error"] for r in g if m == models[0]]
            seeds |= {r["seed"] for r in g}
        print(f"| {n} | " + " | ".join(cells) + f" | {ms(floors)} | {len(seeds)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/semisupervised")
