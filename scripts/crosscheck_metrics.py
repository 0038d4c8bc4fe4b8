#!/usr/bin/python3
"""Recomputes disentanglement metrics from a codes.csv written by examples/disentangle, with numpy and
scikit-learn (Debian: python3-sklearn), as an independent check of eval/disentanglement.hpp.

  crosscheck_metrics.py RUN_DIR [RUN_DIR ...] [--no-sklearn] [--style S]

For each run directory (holding codes.csv and metrics.csv) prints:
  - MIG recomputed on exactly the same sample (numpy histogram edges + digitize, scikit-learn's
    mutual_info_score) next to the value mlvae wrote: the two must agree;
  - DCI with gradient-boosted trees and SAP with a linear SVM (C = 0.01, balanced) — the models
    disentanglement_lib uses, where mlvae substitutes logistic regression and a 20-bin majority
    classifier — on a 2:1 train/test split of the same sample, to show what the substitutions change;
  - with --style S (an ML-VAE with S style dimensions first): for the style and the content block,
    the largest normalised MI I(code; factor) / H(factor) of any of the block's dimensions, per factor.
"""
import csv
import sys

import numpy as np


def load(run_dir):
    with open(f"{run_dir}/codes.csv") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], np.array(rows[1:], dtype=float)
    first_code = next(i for i, name in enumerate(header) if name.startswith("code"))
    factors = body[:, 1:first_code].astype(int).T  # factors x n
    codes = body[:, first_code:].T                  # codes x n
    ours = {}
    with open(f"{run_dir}/metrics.csv") as f:
        for row in csv.DictReader(f):
            if row["representation"] == "full":
                ours[row["metric"]] = float(row["value"])
    return codes, factors, ours


def discretize(codes, bins=20):
    out = np.zeros_like(codes, dtype=int)
    for i, row in enumerate(codes):
        edges = np.histogram(row, bins)[1]
        out[i] = np.digitize(row, edges[:-1])
    return out


def mig(codes, factors):
    from sklearn.metrics import mutual_info_score
    d = discretize(codes)
    m = np.array([[mutual_info_score(f, c) for f in factors] for c in d])  # codes x factors
    h = np.array([mutual_info_score(f, f) for f in factors])
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / h))


def entropy_based(importance, axis):
    p = importance + 1e-11
    p = p / p.sum(axis=axis, keepdims=True)
    base = importance.shape[axis]
    per = 1.0 - (-(p * np.log(p)).sum(axis=axis) / np.log(base))
    weight = importance.sum(axis=1 - axis) / importance.sum()
    return float(np.sum(per * weight))


def dci_gbt(codes, factors, split):
    from sklearn.ensemble import GradientBoostingClassifier
    importance = np.zeros((codes.shape[0], factors.shape[0]))
    acc = []
    for j, y in enumerate(factors):
        model = GradientBoostingClassifier().fit(codes[:, :split].T, y[:split])
        importance[:, j] = np.abs(model.feature_importances_)
        acc.append(np.mean(model.predict(codes[:, split:].T) == y[split:]))
    return entropy_based(importance, axis=1), entropy_based(importance, axis=0), float(np.mean(acc))


def sap_svm(codes, factors, split):
    from sklearn.svm import LinearSVC
    score = np.zeros((codes.shape[0], factors.shape[0]))
    for i, c in enumerate(codes):
        for j, y in enumerate(factors):
            model = LinearSVC(C=0.01, class_weight="balanced").fit(c[:split, None], y[:split])
            score[i, j] = np.mean(model.predict(c[split:, None]) == y[split:])
    top = np.sort(score, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def block_mi(codes, factors, first, count):
    from sklearn.metrics import mutual_info_score
    d = discretize(codes[first:first + count])
    h = np.array([mutual_info_score(f, f) for f in factors])
    m = np.array([[mutual_info_score(f, c) for f in factors] for c in d])
    return m.max(axis=0) / h


def main():
    argv = sys.argv[1:]
    style = None
    if "--style" in argv:
        at = argv.index("--style")
        style = int(argv[at + 1])
        del argv[at:at + 2]
    args = [a for a in argv if not a.startswith("--")]
    sklearn_models = "--no-sklearn" not in argv
    if style is not None:
        print("run,block," + ",".join(f"max_mi_over_h_factor{k}" for k in range(5)))
        for run in args:
            codes, factors, _ = load(run)
            for name, first, count in (("style", 0, style), ("content", style, codes.shape[0] - style)):
                print(f"{run},{name}," + ",".join(f"{v:.3f}" for v in block_mi(codes, factors, first, count)))
        return
    print("run,mig_mlvae,mig_recomputed" + (",dci_d_gbt,dci_c_gbt,dci_i_gbt,sap_svm" if sklearn_models else ""))
    for run in args:
        codes, factors, ours = load(run)
        line = f"{run},{ours.get('mig', float('nan')):.6f},{mig(codes, factors):.6f}"
        if sklearn_models:
            split = 2 * codes.shape[1] // 3
            d, c, i = dci_gbt(codes, factors, split)
            line += f",{d:.4f},{c:.4f},{i:.4f},{sap_svm(codes, factors, split):.4f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
