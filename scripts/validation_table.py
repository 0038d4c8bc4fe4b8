#!/usr/bin/env python3
"""Compares two evaluate_mlvae --seeds runs seed by seed (issue 23: settings chosen on validation data):
style and content accuracy (logistic regression and 5-NN) and the IS log-likelihood per image, with
mean ± sd, 95 % t-intervals and the paired (same seed) difference B − A with its 95 % interval.

Usage: /usr/bin/python3 scripts/validation_table.py RUN_A RUN_B     (directories with results_seed<N>.csv)
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from budget_table import interval, load_runs, value  # noqa: E402  (the same statistics as the budget tables)


def main():
    a_dir, b_dir = sys.argv[1], sys.argv[2]
    a, b = load_runs(a_dir), load_runs(b_dir)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        sys.exit("validation_table: no seed present in both runs")
    metrics = [
        ("style, logistic", dict(metric="accuracy", model="mlvae", split="test", latent="style", classifier="logreg"), 3),
        ("style, 5-NN", dict(metric="accuracy", model="mlvae", split="test", latent="style", classifier="knn"), 3),
        ("content 1 image, logistic", dict(metric="accuracy", model="mlvae", split="test", latent="content",
                                           group_size=1, classifier="logreg"), 3),
        ("content 16 images, logistic", dict(metric="accuracy", model="mlvae", split="test", latent="content",
                                             group_size=16, classifier="logreg"), 3),
        ("style on unseen classes, logistic", dict(metric="accuracy", model="mlvae", split="unseen", latent="style",
                                                   classifier="logreg"), 3),
        ("IS log p(x) per image (K = 20)", dict(metric="is_log_likelihood_per_image", model="mlvae", split="test"), 1),
    ]  # (not the final group ELBO: it is per image of the training group size, which the preset changes)
    print(f"seeds {seeds}; A = {a_dir}, B = {b_dir} (the 'test' split here is the validation split)\n")
    print("| measure | A | B | B − A (paired, 95 %) |")
    print("|---|---|---|---|")
    for name, kw, d in metrics:
        xa = [value(a[s], **kw) for s in seeds]
        xb = [value(b[s], **kw) for s in seeds]
        ma, sa, la, ha = interval(xa)
        mb, sb, lb, hb = interval(xb)
        md, _, ld, hd = interval(np.asarray(xb) - np.asarray(xa))
        verdict = "no difference measured" if ld <= 0 <= hd else ("higher" if ld > 0 else "lower")
        print(f"| {name} | {ma:.{d}f} ± {sa:.{d}f} | {mb:.{d}f} ± {sb:.{d}f} | "
              f"{md:+.{d}f} [{ld:+.{d}f}, {hd:+.{d}f}] ({verdict}) |")


if __name__ == "__main__":
    main()
