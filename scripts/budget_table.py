#!/usr/bin/env python3
"""Tables and curve of the ML-VAE evaluation at the longer budget (docs/results.md, issue 23), rebuilt
from committed CSVs: evaluate_mlvae's per-seed results_seed<N>.csv of one run (--seeds) and the pixel
baselines of scripts/pixel_baselines.py.

For every number: mean ± sd over the seeds and a 95 % t-interval of the mean; for every comparison the
docs draw, the paired (same seed) difference with its 95 % interval — an interval that contains 0 is
reported as "no difference measured". Convergence: per seed and model, the change of the test ELBO
over the last 10 % of the epochs, read off a least-squares line through them (the criterion of
issue 23: less than 0.5 nats per image).

Usage: /usr/bin/python3 scripts/budget_table.py RUN_DIR PIXEL_CSV [FIGURE.png]
  e.g. docs/data/budget/paper200 docs/data/budget/pixel_baselines.csv docs/figures/budget_test_elbo.png
"""
import csv
import glob
import math
import os
import re
import sys

import numpy as np
from scipy import stats


def load_runs(run_dir):
    runs = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "results_seed*.csv"))):
        seed = int(re.search(r"seed(\d+)", path).group(1))
        runs[seed] = list(csv.DictReader(open(path)))
    if not runs:
        sys.exit(f"budget_table: no results_seed*.csv in {run_dir}")
    return runs


def value(rows, **kw):
    hits = [float(r["value"]) for r in rows if all(r[k] == str(v) for k, v in kw.items())]
    if len(hits) != 1:
        raise KeyError(f"{kw}: {len(hits)} rows")
    return hits[0]


def interval(xs):
    xs = np.asarray(xs, dtype=float)
    n = len(xs)
    m, sd = xs.mean(), xs.std(ddof=1) if n > 1 else 0.0
    h = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    return m, sd, m - h, m + h


def fmt(xs, d=3):
    m, sd, lo, hi = interval(xs)
    return f"{m:.{d}f} ± {sd:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"


def diff(a, b, d=3):
    m, _, lo, hi = interval(np.asarray(a) - np.asarray(b))
    verdict = "no difference measured" if lo <= 0 <= hi else ("higher" if lo > 0 else "lower")
    return f"{m:+.{d}f} [{lo:+.{d}f}, {hi:+.{d}f}] ({verdict})"


def welch(a, b, d=3):
    """Mean difference a − b of two independent samples with Welch's 95 % interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    m = a.mean() - b.mean()
    se = math.sqrt(va + vb)
    if se == 0:
        return f"{m:+.{d}f} (no spread)"
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = stats.t.ppf(0.975, df) * se
    verdict = "no difference measured" if m - h <= 0 <= m + h else ("higher" if m - h > 0 else "lower")
    return f"{m:+.{d}f} [{m - h:+.{d}f}, {m + h:+.{d}f}] ({verdict})"


def main():
    run_dir, pixel_csv = sys.argv[1], sys.argv[2]
    figure = sys.argv[3] if len(sys.argv) > 3 else None
    runs = load_runs(run_dir)
    seeds = sorted(runs)
    pixels = list(csv.DictReader(open(pixel_csv)))

    def per_seed(**kw):
        return [value(runs[s], **kw) for s in seeds]

    def pixel(probe, split, k):
        return [float(r["accuracy"]) for r in pixels if r["probe"] == probe and r["split"] == split and r["k"] == str(k)]

    epochs = max(int(r["group_size"]) for r in runs[seeds[0]] if r["classifier"] == "epoch")
    print(f"seeds {seeds}, {epochs} epochs per model\n")
    print("| split | probe | logistic regression | 5-NN |")
    print("|---|---|---|---|")
    for split in ("test", "unseen"):
        for k in (1, 2, 4, 8, 16):
            strategy = 1 if k == 1 else 2
            lr = per_seed(metric="accuracy", model="mlvae", split=split, latent="content", strategy=strategy,
                          group_size=k, classifier="logreg")
            kn = per_seed(metric="accuracy", model="mlvae", split=split, latent="content", strategy=strategy,
                          group_size=k, classifier="knn")
            print(f"| {split} | ML-VAE content, {k} image{'s' if k > 1 else ''} | {fmt(lr)} | {fmt(kn)} |")
            px = pixel("logreg_pixels", split, k)
            if px:
                print(f"| {split} | pixels, mean of {k} image{'s' if k > 1 else ''} | {fmt(px) if len(px) > 1 else f'{px[0]:.3f}'} | – |")
        st = per_seed(metric="accuracy", model="mlvae", split=split, latent="style", classifier="logreg")
        stk = per_seed(metric="accuracy", model="mlvae", split=split, latent="style", classifier="knn")
        vz = per_seed(metric="accuracy", model="vae", split=split, latent="z", classifier="logreg")
        vzk = per_seed(metric="accuracy", model="vae", split=split, latent="z", classifier="knn")
        print(f"| {split} | ML-VAE style | {fmt(st)} | {fmt(stk)} |")
        print(f"| {split} | VAE z (same budget) | {fmt(vz)} | {fmt(vzk)} |")
        mlp = pixel("mlp_pixels", split, 1)
        if mlp:
            print(f"| {split} | pixels, MLP probe (256 ReLU) | {fmt(mlp)} | – |")
        chance = value(runs[seeds[0]], metric="accuracy_chance", split=split)
        print(f"| {split} | chance (majority class) | {chance:.3f} | – |")
    print()
    print("Paired differences (same seed), logistic regression, 95 % interval:\n")
    for split in ("test", "unseen"):
        st = per_seed(metric="accuracy", model="mlvae", split=split, latent="style", classifier="logreg")
        c1 = per_seed(metric="accuracy", model="mlvae", split=split, latent="content", strategy=1, group_size=1,
                      classifier="logreg")
        vz = per_seed(metric="accuracy", model="vae", split=split, latent="z", classifier="logreg")
        px = pixel("logreg_pixels", split, 1)
        print(f"- {split}: style − VAE z {diff(st, vz)}; content (1 image) − VAE z {diff(c1, vz)}"
              + (f"; style − pixels {diff(st, [px[0]] * len(st))}" if px else ""))
    print()
    print("Accumulated content against the mean of the same number of pixel images (logistic regression;")
    print("the groupings differ, so Welch's interval of independent samples):\n")
    for split in ("test", "unseen"):
        parts = []
        for k in (2, 4, 8, 16):
            c = per_seed(metric="accuracy", model="mlvae", split=split, latent="content", strategy=2, group_size=k,
                         classifier="logreg")
            px = pixel("logreg_pixels", split, k)
            if len(px) > 1:
                parts.append(f"k = {k}: {welch(c, px)}")
        if parts:
            print(f"- {split}: " + "; ".join(parts))
    print()
    print("| split | model | IS log p(x) per image (K = 50) | ELBO per image | IS log p(X_G) per group / images |")
    print("|---|---|---|---|---|")
    for split in ("test", "unseen"):
        for model in ("mlvae", "vae"):
            ll = per_seed(metric="is_log_likelihood_per_image", model=model, split=split)
            el = per_seed(metric="elbo_per_image_K_sample_mean", model=model, split=split)
            gl = per_seed(metric="is_log_likelihood_per_group_per_image", model=model, split=split)
            print(f"| {split} | {'ML-VAE' if model == 'mlvae' else 'VAE'} | {fmt(ll, 1)} | {fmt(el, 1)} | {fmt(gl, 1)} |")
    print()
    for split in ("test", "unseen"):
        for metric, label in (("is_log_likelihood_per_image", "single images"),
                              ("is_log_likelihood_per_group_per_image", "groups of 16, per image")):
            a = per_seed(metric=metric, model="mlvae", split=split)
            b = per_seed(metric=metric, model="vae", split=split)
            print(f"- {split}, {label}: IS log-likelihood ML-VAE − VAE {diff(a, b, 1)}")
    print()

    # Convergence over the last 10 % of the epochs.
    window = max(2, epochs // 10)
    curves = {}
    for model in ("mlvae", "vae"):
        changes = []
        curves[model] = []
        for s in seeds:
            ys = [value(runs[s], metric="test_elbo_per_image", model=model, group_size=e, classifier="epoch")
                  for e in range(1, epochs + 1)]
            curves[model].append(ys)
            tail = np.asarray(ys[-window:])
            slope = np.polyfit(np.arange(window), tail, 1)[0]
            changes.append(slope * (window - 1))
        m, sd, lo, hi = interval(changes)
        ok = all(abs(c) < 0.5 for c in changes)
        print(f"- {model}: test ELBO change over the last {window} epochs (least-squares line) {m:+.2f} ± {sd:.2f} "
              f"nats/image [{lo:+.2f}, {hi:+.2f}]; below 0.5 in every seed: {'yes' if ok else 'no'}")
        # The per-epoch test ELBO is one noisy sample per image; means over windows are steadier.
        windows = [np.mean(c[-window:]) - np.mean(c[-2 * window:-window]) for c in curves[model]]
        noise = [np.std(c[-window:], ddof=1) for c in curves[model]]
        m, sd, lo, hi = interval(windows)
        ok = all(abs(c) < 0.5 for c in windows)
        print(f"  mean of the last {window} epochs − mean of the {window} before: {m:+.2f} ± {sd:.2f} [{lo:+.2f}, "
              f"{hi:+.2f}] (per seed {', '.join(f'{w:+.2f}' for w in windows)}); below 0.5 in every seed: "
              f"{'yes' if ok else 'no'}; epoch-to-epoch sd in the last {window}: {np.mean(noise):.2f}")
    if figure:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for model, label in (("mlvae", "ML-VAE"), ("vae", "VAE")):
            ys = np.asarray(curves[model])
            x = np.arange(1, epochs + 1)
            ax.plot(x, ys.mean(axis=0), label=f"{label} (mean of {len(seeds)} seeds)")
            ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), alpha=0.25)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test ELBO per image (nats)")
        ax.set_title("ML-VAE: group ELBO / group size (a bound on log p(X_G)/|G|); VAE: per image", fontsize=8)
        ax.set_ylim(np.percentile(np.asarray(curves["mlvae"]), 2) - 5, None)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(figure, dpi=120)
        print(f"\nwrote {figure}")


if __name__ == "__main__":
    main()
