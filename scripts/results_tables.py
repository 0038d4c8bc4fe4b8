#!/usr/bin/env python3
"""Markdown tables of docs/results.md from an evaluate_mlvae --seeds results.csv (value = mean over the
seeds, sd, n): class accuracy per latent and strategy, and the importance-sampled log-likelihoods.

Usage: /usr/bin/python3 scripts/results_tables.py out/study/paper_eval/results.csv
"""
import csv
import sys

rows = list(csv.DictReader(open(sys.argv[1])))


def pick(**kw):
    return [r for r in rows if all(r[k] == v for k, v in kw.items())]


def ms(r, d=3):
    return f"{float(r['value']):.{d}f} ± {float(r['sd']):.{d}f}"


print("| split | latent | strategy | images k | log. regression | 5-NN |")
print("|---|---|---|---|---|---|")
for split in ("test", "unseen"):
    for r in pick(metric="accuracy", model="mlvae", split=split, latent="content", classifier="logreg"):
        knn = pick(metric="accuracy", model="mlvae", split=split, latent="content", classifier="knn",
                   group_size=r["group_size"])[0]
        print(f"| {split} | content | {r['strategy']} | {r['group_size']} | {ms(r)} | {ms(knn)} |")
    for latent, model, label in (("style", "mlvae", "style"), ("z", "vae", "VAE z")):
        lr = pick(metric="accuracy", model=model, split=split, latent=latent, classifier="logreg")
        kn = pick(metric="accuracy", model=model, split=split, latent=latent, classifier="knn")
        if lr:
            print(f"| {split} | {label} | {'1 and 2' if latent == 'style' else '–'} | – | {ms(lr[0])} | {ms(kn[0])} |")
print()
print("| split | model | IS log p(x) per image | ELBO per image | IS log p(X_G) per group | per group / images |")
print("|---|---|---|---|---|---|")
for split in ("test", "unseen"):
    for model in ("mlvae", "vae"):
        a = pick(metric="is_log_likelihood_per_image", model=model, split=split)
        if not a:
            continue
        b = pick(metric="elbo_per_image_K_sample_mean", model=model, split=split)[0]
        c = pick(metric="is_log_likelihood_per_group", model=model, split=split)[0]
        d = pick(metric="is_log_likelihood_per_group_per_image", model=model, split=split)[0]
        name = "ML-VAE" if model == "mlvae" else "VAE"
        print(f"| {split} | {name} | {ms(a[0], 2)} | {ms(b, 2)} | {ms(c, 1)} | {ms(d, 2)} |")
w = pick(metric="wall_seconds")
if w:
    print(f"\nwall time per seed: {float(w[0]['value']):.0f} ± {float(w[0]['sd']):.0f} s")
