#!/usr/bin/python3
"""Training curves of train_mlvae: train and test ELBO per group by epoch, from train_log.csv.

Usage: /usr/bin/python3 scripts/plot_training.py out/train_mlvae/train_log.csv out/train_mlvae/training_curves.png
(train_mlvae runs it itself when /usr/bin/python3 has matplotlib; Debian: python3-matplotlib).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def main(log_path, png_path):
    with open(log_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{log_path}: no epochs logged")
    epoch = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(epoch, [float(r["train_elbo_per_group"]) for r in rows], "o-", label="train (average over the epoch)")
    ax.plot(epoch, [float(r["test_elbo_per_group"]) for r in rows], "s--", label="test (after the epoch)")
    partial = [r for r in rows if int(r.get("first_step", 1)) > 1]
    for r in partial:  # epochs resumed mid-way average only their remaining steps
        ax.annotate("resumed mid-epoch", (int(r["epoch"]), float(r["train_elbo_per_group"])), fontsize=8)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel("ELBO per group (nats)")
    ax.set_title("train_mlvae training curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
