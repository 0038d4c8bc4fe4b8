#!/usr/bin/python3
"""Figures of evaluate_mlvae from its results.csv: accuracy_vs_group_size.png (class accuracy from the
content codes against the number of accumulated observations, with style, VAE and chance) and
training_curves.png (ELBO per observation by epoch, ML-VAE and VAE).

Usage: /usr/bin/python3 scripts/plot_results.py out/evaluate_mlvae/results.csv out/evaluate_mlvae
(evaluate_mlvae runs it itself when /usr/bin/python3 has matplotlib; Debian: python3-matplotlib).
"""
import csv
import os
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(results_path, out_dir):
    with open(results_path, newline="") as f:
        rows = list(csv.DictReader(f))

    def pick(**want):
        return [r for r in rows if all(r[k] == v for k, v in want.items())]

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    splits = sorted({r["split"] for r in pick(metric="accuracy")}, key=lambda s: s != "test")
    for i, split in enumerate(splits):
        color = f"C{i}"
        for clf, style in (("logreg", "o-"), ("knn", "s--")):
            pts = sorted((int(r["group_size"]), float(r["value"]))
                         for r in pick(metric="accuracy", model="mlvae", split=split, latent="content", classifier=clf))
            if pts:
                ax.plot(*zip(*pts), style, color=color, label=f"content, {clf} ({split})")
        for r in pick(metric="accuracy", model="mlvae", split=split, latent="style", classifier="logreg"):
            ax.axhline(float(r["value"]), color=color, ls=":", label=f"style, logreg ({split})")
        for r in pick(metric="accuracy", model="vae", split=split, classifier="logreg"):
            ax.axhline(float(r["value"]), color=color, ls="-.", alpha=0.6, label=f"VAE z, logreg ({split})")
        for r in pick(metric="accuracy_chance", split=split):
            ax.axhline(float(r["value"]), color="grey", lw=0.8, label=f"chance ({split})")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("observations accumulated in the group (strategy 2; 1 = strategy 1)")
    ax.set_ylabel("test accuracy")
    ax.set_title("class accuracy from latent codes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "accuracy_vs_group_size.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, model in enumerate(("mlvae", "vae")):
        for metric, style in (("train_elbo_per_image", "o-"), ("test_elbo_per_image", "s--")):
            pts = sorted((int(r["group_size"]), float(r["value"])) for r in pick(metric=metric, model=model))
            if pts:
                name = {"mlvae": "ML-VAE", "vae": "VAE"}[model]
                ax.plot(*zip(*pts), style, color=f"C{i}", label=f"{name} {metric.split('_')[0]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO per observation (nats; ML-VAE: group ELBO / group size)")
    ax.set_title("training curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "training_curves.png"), dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
