#!/usr/bin/env python3
"""Summarises runs of examples/disentangle (scripts/run_disentanglement.sh) as Markdown tables.

  summarize_disentanglement.py OUT_DIR

Reads OUT_DIR/<configuration>/seed<N>/metrics.csv and prints, per configuration, the mean ± sample
standard deviation over seeds of every metric of the whole code, then the ML-VAE's style and
content blocks. Python 3 standard library only.
"""
import csv
import glob
import os
import statistics
import sys

FULL = ["beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "sap",
        "elbo_per_image_heldout"]
BLOCK = ["mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "sap"]


def fmt(values):
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}" if abs(values[0]) >= 10 else f"{values[0]:.3f}"
    if abs(statistics.mean(values)) >= 10:
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "out/disentangle_results"
    data = {}  # (config, representation, metric) -> [values]
    seeds = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "seed*", "metrics.csv"))):
        config = os.path.basename(os.path.dirname(os.path.dirname(path)))
        seeds.setdefault(config, 0)
        seeds[config] += 1
        with open(path) as f:
            for row in csv.DictReader(f):
                data.setdefault((config, row["representation"], row["metric"]), []).append(float(row["value"]))
    order = ["vae", "beta-vae", "beta-tcvae", "hfvae"]
    configs = sorted(seeds, key=lambda c: (order.index(c) if c in order else len(order), c))
    print("| model | seeds | β-VAE | FactorVAE | MIG | DCI D | DCI C | DCI I | SAP | held-out ELBO/image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in configs:
        print(f"| {c} | {seeds[c]} | " + " | ".join(fmt(data.get((c, "full", m), [])) for m in FULL) + " |")
    blocks = [c for c in configs if (c, "content", "mig") in data]
    if blocks:
        print()
        print("| model | block | MIG | DCI D | DCI C | DCI I | SAP |")
        print("|---|---|---|---|---|---|---|")
        for c in blocks:
            for rep in ("style", "content"):
                print(f"| {c} | {rep} | " + " | ".join(fmt(data.get((c, rep, m), [])) for m in BLOCK) + " |")


if __name__ == "__main__":
    main()
