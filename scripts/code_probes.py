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

Usage: /usr/bin/python3 scripts/code_probes.py CODES_DIR [--seeds 1,2,3,4,5] [--parts ...] > probes.csv
Writes CSV rows: probe,model,part,split,seed,accuracy  (an evaluation class absent from the fitting
set counts as an error, as in evaluate_mlvae).
"""
import argparse
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

# (model, part, split) triples probed by default: single-image content, style on trained and unseen
# classes, the VAE's z on both.
DEFAULT_PARTS = "mlvae:content:test,mlvae:style:test,mlvae:style:unseen,vae:z:test,vae:z:unseen"


def load(directory, seed, split, name):
    return np.load(f"{directory}/codes_seed{seed}_{split}_{name}.npy")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("codes", help="the --out directory of evaluate_mlvae --save-codes")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--parts", default=DEFAULT_PARTS, help="model:part:split triples, comma-separated")
    ap.add_argument("--no-header", action="store_true", help="omit the CSV header (to append to a file)")
    args = ap.parse_args()
    if not args.no_header:
        print("probe,model,part,split,seed,accuracy")
    for seed in (int(s) for s in args.seeds.split(",")):
        for triple in args.parts.split(","):
            model, part, split = triple.split(":")
            name = "vae" if model == "vae" else part
            x_fit, x_eval = load(args.codes, seed, split, f"fit_{name}"), load(args.codes, seed, split, f"eval_{name}")
            y_fit = load(args.codes, seed, split, "fit_classes").astype(int)
            y_eval = load(args.codes, seed, split, "eval_classes").astype(int)
            mu, sd = x_fit.mean(axis=0), x_fit.std(axis=0) + 1e-8
            f, e = (x_fit - mu) / sd, (x_eval - mu) / sd
            lr = LogisticRegression(C=1.0, max_iter=300).fit(f, y_fit)
            print(f"logreg,{model},{part},{split},{seed},{lr.score(e, y_eval):.6f}", flush=True)
            mlp = MLPClassifier(hidden_layer_sizes=(256,), early_stopping=True, random_state=seed, max_iter=200)
            mlp.fit(f, y_fit)
            print(f"mlp,{model},{part},{split},{seed},{mlp.score(e, y_eval):.6f}", flush=True)
        print(f"  seed {seed} done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
