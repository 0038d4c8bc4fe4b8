#!/usr/bin/env python3
"""Pixel baselines for the probes of docs/results.md (issue 23): what a classifier reads from the images
themselves, on the same splits evaluate_mlvae uses with --held-out-classes 7,8,9 on Fashion-MNIST
(fitted on the training images, scored on the test images; "test" = classes 0-6, "unseen" = 7, 8, 9).

Probes, each on standardised pixels (statistics of the fitting set):
  * logistic regression (scikit-learn, L2, C = 1, lbfgs) on single images;
  * the MLP probe of the reference re-implementation: one hidden layer of 256 ReLU units (Adam,
    early stopping on 10 % of the fitting set);
  * evidence accumulation as the content probe's strategy 2: the mean of k images of one class
    (k = 1, 2, 4, 8, 16), logistic regression fitted on such means of the fitting set.
The ML-VAE's content and style codes are scored by the same kind of classifier in evaluate_mlvae, so
"style predicts the class" is read against these numbers, not only against chance.

Usage: /usr/bin/python3 scripts/pixel_baselines.py [--data DIR] [--seeds 1,2,3,4,5] > out/pixel_baselines.csv
Writes CSV rows: probe,split,k,seed,accuracy.
"""
import argparse
import gzip
import struct
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier


def idx(path):
    with gzip.open(path, "rb") as f:
        magic, = struct.unpack(">I", f.read(4))
        dims = [struct.unpack(">I", f.read(4))[0] for _ in range(magic & 0xFF)]
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def grouped_means(x, y, k, rng):
    """Means of k images of one class, as many groups as fit in each class (images shuffled first)."""
    xs, ys = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        for g in range(len(members) // k):
            xs.append(x[members[g * k:(g + 1) * k]].mean(axis=0))
            ys.append(c)
    return np.asarray(xs), np.asarray(ys)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--held-out", default="7,8,9")
    ap.add_argument("--splits", default="test,unseen", help="which splits (e.g. one per process, in parallel)")
    ap.add_argument("--no-header", action="store_true", help="omit the CSV header (to append to a file)")
    args = ap.parse_args()
    xtr = idx(f"{args.data}/train-images-idx3-ubyte.gz").reshape(60000, -1).astype(np.float64) / 255
    ytr = idx(f"{args.data}/train-labels-idx1-ubyte.gz").astype(int)
    xte = idx(f"{args.data}/t10k-images-idx3-ubyte.gz").reshape(10000, -1).astype(np.float64) / 255
    yte = idx(f"{args.data}/t10k-labels-idx1-ubyte.gz").astype(int)
    held = [int(c) for c in args.held_out.split(",")]
    if not args.no_header:
        print("probe,split,k,seed,accuracy")
    for split, keep in (("test", lambda y: ~np.isin(y, held)), ("unseen", lambda y: np.isin(y, held))):
        if split not in args.splits.split(","):
            continue
        ftr, fte = keep(ytr), keep(yte)
        x_fit, y_fit, x_eval, y_eval = xtr[ftr], ytr[ftr], xte[fte], yte[fte]
        mu, sd = x_fit.mean(axis=0), x_fit.std(axis=0) + 1e-8
        std = lambda a: (a - mu) / sd  # noqa: E731
        # Single images: lbfgs is deterministic, so one fit stands for every seed.
        lr = LogisticRegression(C=1.0, max_iter=300).fit(std(x_fit), y_fit)
        print(f"logreg_pixels,{split},1,all,{lr.score(std(x_eval), y_eval):.6f}", flush=True)
        for seed in (int(s) for s in args.seeds.split(",")):
            rng = np.random.default_rng(seed)
            for k in (2, 4, 8, 16):
                gx, gy = grouped_means(x_fit, y_fit, k, rng)
                ex, ey = grouped_means(x_eval, y_eval, k, rng)
                lr = LogisticRegression(C=1.0, max_iter=300).fit(std(gx), gy)
                print(f"logreg_pixels,{split},{k},{seed},{lr.score(std(ex), ey):.6f}", flush=True)
            mlp = MLPClassifier(hidden_layer_sizes=(256,), early_stopping=True, random_state=seed, max_iter=200)
            mlp.fit(std(x_fit), y_fit)
            print(f"mlp_pixels,{split},1,{seed},{mlp.score(std(x_eval), y_eval):.6f}", flush=True)
            print(f"  {split} seed {seed} done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
