#!/usr/bin/env python3
"""The MLP-probe table of docs/results.md (issue 23), rebuilt from committed CSVs: the probes of
scripts/code_probes.py on the codes of 5 seeds and the pixel probes of scripts/pixel_baselines.py.

For each code (ML-VAE content and style, the VAE's z) and split: logistic regression and the MLP probe,
mean ± sd over the seeds and a 95 % t-interval; then the paired (same seed) differences the docs
draw — an interval that contains 0 is reported as "no difference measured". Accumulated evidence
(rows with part "<part>_mean<k>", every k present in the CSV): the ML-VAE's content, the VAE's z and
the pixels read as the mean of k images of one class, same groups for the three within a seed, and
their paired differences under both probes.

Usage: /usr/bin/python3 scripts/code_probe_table.py docs/data/budget/code_probes.csv docs/data/budget/pixel_baselines.csv
"""
import csv
import re
import sys

from budget_table import diff, fmt


def main():
    probes = list(csv.DictReader(open(sys.argv[1])))
    pixels = list(csv.DictReader(open(sys.argv[2])))
    seeds = sorted({int(r["seed"]) for r in probes})

    def acc(probe, model, part, split):
        got = {int(r["seed"]): float(r["accuracy"]) for r in probes
               if (r["probe"], r["model"], r["part"], r["split"]) == (probe, model, part, split)}
        return [got[s] for s in seeds]

    def pixel(probe, split):
        rows = [r for r in pixels if r["probe"] == probe and r["split"] == split and r["k"] == "1"]
        if len(rows) == 1 and rows[0]["seed"] == "all":
            return [float(rows[0]["accuracy"])] * len(seeds)
        got = {int(r["seed"]): float(r["accuracy"]) for r in rows}
        return [got[s] for s in seeds]

    print(f"seeds {','.join(map(str, seeds))}\n")
    print("| code | split | logistic regression | MLP probe (256 ReLU) | MLP − logistic |")
    print("|---|---|---:|---:|---:|")
    parts = [("mlvae", "content", "test"), ("mlvae", "style", "test"), ("mlvae", "style", "unseen"),
             ("vae", "z", "test"), ("vae", "z", "unseen")]
    for model, part, split in parts:
        lr, mlp = acc("logreg", model, part, split), acc("mlp", model, part, split)
        name = f"ML-VAE {part}" if model == "mlvae" else "VAE z"
        print(f"| {name} | {split} | {fmt(lr)} | {fmt(mlp)} | {diff(mlp, lr)} |")
    for split in ("test", "unseen"):
        lr, mlp = pixel("logreg_pixels", split), pixel("mlp_pixels", split)
        print(f"| pixels (scripts/pixel_baselines.py) | {split} | {fmt(lr)} | {fmt(mlp)} | {diff(mlp, lr)} |")
    ks = sorted({int(m.group(1)) for r in probes for m in [re.fullmatch(r"content_mean(\d+)", r["part"])] if m})
    accumulated = [("mlvae", "content", "ML-VAE content, mean of {k} codes"), ("vae", "z", "VAE z, mean of {k} codes"),
                   ("pixels", "pixels", "pixels, mean of {k} images")]
    for k in ks:
        for split in ("test", "unseen"):
            for model, part, label in accumulated:
                lr, mlp = acc("logreg", model, f"{part}_mean{k}", split), acc("mlp", model, f"{part}_mean{k}", split)
                print(f"| {label.format(k=k)} | {split} | {fmt(lr)} | {fmt(mlp)} | {diff(mlp, lr)} |")

    print("\nPaired differences of the MLP probe (same seed):\n")
    print("| comparison | difference [95 % interval] |")
    print("|---|---:|")
    for label, a, b in [
        ("ML-VAE content − pixels (trained classes)", acc("mlp", "mlvae", "content", "test"), pixel("mlp_pixels", "test")),
        ("ML-VAE style − pixels (trained classes)", acc("mlp", "mlvae", "style", "test"), pixel("mlp_pixels", "test")),
        ("ML-VAE style − VAE z (trained classes)", acc("mlp", "mlvae", "style", "test"), acc("mlp", "vae", "z", "test")),
        ("ML-VAE style − pixels (unseen classes)", acc("mlp", "mlvae", "style", "unseen"), pixel("mlp_pixels", "unseen")),
        ("ML-VAE style − VAE z (unseen classes)", acc("mlp", "mlvae", "style", "unseen"), acc("mlp", "vae", "z", "unseen")),
        ("ML-VAE content − VAE z (trained classes)", acc("mlp", "mlvae", "content", "test"), acc("mlp", "vae", "z", "test")),
    ]:
        print(f"| {label} | {diff(a, b)} |")

    for k in ks:
        print(f"\nPaired differences on the mean of {k} images of one class (same seed, same groups):\n")
        print("| comparison | logistic regression | MLP probe (256 ReLU) |")
        print("|---|---:|---:|")
        for split in ("test", "unseen"):
            classes = "trained classes" if split == "test" else "unseen classes"
            for label, (ma, pa), (mb, pb) in [
                ("ML-VAE content − pixels", ("mlvae", "content"), ("pixels", "pixels")),
                ("ML-VAE content − VAE z", ("mlvae", "content"), ("vae", "z")),
                ("VAE z − pixels", ("vae", "z"), ("pixels", "pixels")),
            ]:
                cells = [diff(acc(p, ma, f"{pa}_mean{k}", split), acc(p, mb, f"{pb}_mean{k}", split))
                         for p in ("logreg", "mlp")]
                print(f"| {label}, {classes} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
