#!/usr/bin/python3
"""Figures of evaluate_mlvae from its results.csv: accuracy_vs_group_size.png (class accuracy from the
content codes against the number of accumulated observations, with style, VAE and chance),
training_curves.png (ELBO per observation by epoch, ML-VAE and VAE) and, for data that are not
images, feature_r2.png (how much of each feature the content and the style codes explain).

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
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel("ELBO per observation (nats; ML-VAE: group ELBO / group size)")
    ax.set_title("training curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "training_curves.png"), dpi=120)
    plt.close(fig)

    r2 = {}
    for r in pick(metric="feature_r2", model="mlvae"):
        r2.setdefault(r["classifier"], {})[r["latent"]] = float(r["value"])
    if r2:
        names = list(r2)
        y = range(len(names))
        fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.28 * len(names)))
        ax.barh([i - 0.2 for i in y], [r2[n].get("content", 0) for n in names], height=0.4, label="content")
        ax.barh([i + 0.2 for i in y], [r2[n].get("style", 0) for n in names], height=0.4, label="style")
        ax.set_yticks(list(y))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(min(0.0, min(min(v.values()) for v in r2.values())), 1)
        ax.set_xlabel("R² of the feature from a linear fit on the codes (test split)")
        ax.set_title("what the content and the style codes explain")
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "feature_r2.png"), dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
