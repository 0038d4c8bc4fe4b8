#!/usr/bin/env python3
"""The MLP probe on the codes (issue 23): what a one-hidden-layer classifier reads from the ML-VAE's
style and content codes and from the VAE baseline's z, next to the logistic regression on the same
codes, from the .npy files `evaluate_mlvae --save-codes` writes (posterior means, fitted on the
training images, scored on the test images; split "test" = the trained classes, "unseen" = the
held-out ones).

Probes, each on standardised codes (statistics of the fitting set), the same settings as the pixel
MLP probe of scripts/pixel_baselines.py: one hidden layer of 256 ReLU units (scikit-learn
MLPClassifier, Adam, early stopping on 10 % of the fitting set, random_state = the seed), and the
logistic regression (L2, C = 1, lbfgs).

Accumulated evidence (--accumulated, --k, default 16): the images of each class are cut into groups of
k as evaluate_mlvae's strategy 2 cuts them (mlvae::make_key_groups, mirrored below with mlvae's Rng:
members of each class shuffled by Fisher-Yates, seed = run seed + 10 + k for the fitting set and
+ 20 + k for the evaluation set, a class's leftover members form one smaller group), and each group is
read through the MEAN of its members' codes (posterior means; the saved files hold no variances, so
evaluate_mlvae's product-of-Gaussians content cannot be recomputed), or of their pixels for the
baseline "pixels" (the images of the IDX files, in the order evaluate_mlvae keeps them). The probes
are fitted on one row per fitting group (every fitting group has k members when k divides the 6000
images of a class, so this is evaluate_mlvae's fit on every member with its group's code, whose loss
is a mean) and scored per evaluation image: a group counts as many times as it has members.

Usage: /usr/bin/python3 scripts/code_probes.py CODES_DIR [--seeds 1,2,3,4,5] [--parts ...]
           [--accumulated ...] [--k 16] [--data DIR] > probes.csv
Writes CSV rows: probe,model,part,split,seed,accuracy; accumulated rows have part "<part>_mean<k>"
(content_mean16, z_mean16, pixels_mean16). An evaluation class absent from the fitting set counts as
an error, as in evaluate_mlvae.
"""
import argparse
import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pixel_baselines import idx  # noqa: E402

# (model, part, split) triples probed by default: single-image content, style on trained and unseen
# classes, the VAE's z on both.
DEFAULT_PARTS = "mlvae:content:test,mlvae:style:test,mlvae:style:unseen,vae:z:test,vae:z:unseen"
# Accumulated over k images of one class: the ML-VAE's content, the VAE's z and the pixels.
DEFAULT_ACCUMULATED = ("mlvae:content:test,mlvae:content:unseen,vae:z:test,vae:z:unseen,"
                       "pixels:pixels:test,pixels:pixels:unseen")
MASK = (1 << 64) - 1


class Rng:
    """mlvae::Rng (include/mlvae/core/random.hpp): xoshiro256++ seeded by SplitMix64; uniform_index only."""

    def __init__(self, seed):
        z, self.s = seed & MASK, []
        for _ in range(4):
            z = (z + 0x9E3779B97F4A7C15) & MASK
            x = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(x ^ (x >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK

    def next(self):
        s = self.s
        result = (self.rotl((s[0] + s[3]) & MASK, 23) + s[0]) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def uniform_index(self, n):
        limit = MASK - MASK % n
        while True:
            r = self.next()
            if r < limit:
                return r % n


def key_groups(keys, size, seed):
    """mlvae::make_key_groups (include/mlvae/eval/inference.hpp): lists of row indices, one per group."""
    rng, groups = Rng(seed), []
    for key in sorted(set(keys.tolist())):
        members = np.flatnonzero(keys == key).tolist()
        for i in range(len(members), 1, -1):  # Fisher-Yates
            j = rng.uniform_index(i)
            members[i - 1], members[j] = members[j], members[i - 1]
        groups += [members[b:b + size] for b in range(0, len(members), size)]
    return groups


def load(directory, seed, split, name):
    return np.load(f"{directory}/codes_seed{seed}_{split}_{name}.npy")


def probe(model, part, split, seed, x_fit, y_fit, x_eval, y_eval, eval_weight=None):
    """Both probes on standardised inputs (statistics of the fitting set); prints one row each."""
    mu, sd = x_fit.mean(axis=0), x_fit.std(axis=0) + 1e-8
    f, e = (x_fit - mu) / sd, (x_eval - mu) / sd
    lr = LogisticRegression(C=1.0, max_iter=300).fit(f, y_fit)
    print(f"logreg,{model},{part},{split},{seed},{lr.score(e, y_eval, sample_weight=eval_weight):.6f}", flush=True)
    mlp = MLPClassifier(hidden_layer_sizes=(256,), early_stopping=True, random_state=seed, max_iter=200)
    mlp.fit(f, y_fit)
    print(f"mlp,{model},{part},{split},{seed},{mlp.score(e, y_eval, sample_weight=eval_weight):.6f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("codes", help="the --out directory of evaluate_mlvae --save-codes")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--parts", default=DEFAULT_PARTS, help="model:part:split triples, comma-separated ('' for none)")
    ap.add_argument("--accumulated", default=DEFAULT_ACCUMULATED,
                    help="model:part:split triples read as the mean of k images of one class ('' for none)")
    ap.add_argument("--k", type=int, default=16, help="images accumulated per group")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="the images, for the pixels")
    ap.add_argument("--held-out", default="7,8,9", help="the held-out classes of the run (for the pixels)")
    ap.add_argument("--no-header", action="store_true", help="omit the CSV header (to append to a file)")
    args = ap.parse_args()
    if args.k < 1:
        sys.exit("code_probes: --k must be >= 1")
    parts = [t.split(":") for t in args.parts.split(",") if t]
    accumulated = [t.split(":") for t in args.accumulated.split(",") if t]
    pixels = {}
    if any(model == "pixels" for model, _, _ in accumulated):
        held = [int(c) for c in args.held_out.split(",")]
        for which, stem in (("fit", "train"), ("eval", "t10k")):
            x = idx(f"{args.data}/{stem}-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float64) / 255
            y = idx(f"{args.data}/{stem}-labels-idx1-ubyte.gz").astype(int)
            for split, keep in (("test", ~np.isin(y, held)), ("unseen", np.isin(y, held))):
                pixels[(split, which)] = x[keep], np.unique(y[keep], return_inverse=True)[1]
    if not args.no_header:
        print("probe,model,part,split,seed,accuracy")
    for seed in (int(s) for s in args.seeds.split(",")):
        for model, part, split in parts:
            name = "vae" if model == "vae" else part
            x_fit, x_eval = load(args.codes, seed, split, f"fit_{name}"), load(args.codes, seed, split, f"eval_{name}")
            y_fit = load(args.codes, seed, split, "fit_classes").astype(int)
            y_eval = load(args.codes, seed, split, "eval_classes").astype(int)
            probe(model, part, split, seed, x_fit, y_fit, x_eval, y_eval)
        for model, part, split in accumulated:
            y = {w: load(args.codes, seed, split, f"{w}_classes").astype(int) for w in ("fit", "eval")}
            means, labels, sizes = {}, {}, {}
            for w, offset in (("fit", 10), ("eval", 20)):
                if model == "pixels":
                    x, classes = pixels[(split, w)]  # evaluate_mlvae keeps the files' order: checked here
                    if not np.array_equal(classes, y[w]):
                        sys.exit(f"code_probes: the {split} {w} images' labels are not the saved classes")
                else:
                    x = load(args.codes, seed, split, f"{w}_{'vae' if model == 'vae' else part}")
                groups = key_groups(y[w], args.k, seed + offset + args.k)
                means[w] = np.stack([x[g].mean(axis=0) for g in groups])
                labels[w] = np.array([y[w][g[0]] for g in groups])
                sizes[w] = np.array([len(g) for g in groups], dtype=float)
            if len(set(sizes["fit"])) != 1:
                print(f"  note: {split} fitting groups of unequal sizes {sorted(set(sizes['fit']))}; fitted one row "
                      "per group", file=sys.stderr)
            probe(model, f"{part}_mean{args.k}", split, seed, means["fit"], labels["fit"], means["eval"],
                  labels["eval"], eval_weight=sizes["eval"])
        print(f"  seed {seed} done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
