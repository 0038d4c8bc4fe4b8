#!/usr/bin/env python3
"""Style-leakage study (issue 16): reads OUT/<point>/results.csv (evaluate_mlvae --seeds: value = mean,
sd, n over the seeds), prints the markdown table of docs/results.md and draws OUT/tradeoff.png (style
accuracy against test log-likelihood, error bars = sd over seeds).

Usage: /usr/bin/python3 scripts/plot_study.py out/study [docs/figures]
"""
import csv
import os
import sys

out = sys.argv[1]
fig_dir = sys.argv[2] if len(sys.argv) > 2 else out

COLUMNS = [  # (header, metric, split, latent, group_size, classifier)
    ("style logreg", "accuracy", "test", "style", "1", "logreg"),
    ("style 5-NN", "accuracy", "test", "style", "1", "knn"),
    ("content k=1 logreg", "accuracy", "test", "content", "1", "logreg"),
    ("content k=1 5-NN", "accuracy", "test", "content", "1", "knn"),
    ("content k=16 logreg", "accuracy", "test", "content", "16", "logreg"),
    ("unseen style logreg", "accuracy", "unseen", "style", "1", "logreg"),
    ("unseen content k=1 logreg", "accuracy", "unseen", "content", "1", "logreg"),
    ("IS log p(x) test", "is_log_likelihood_per_image", "test", "", "1", None),
]


def load(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def get(rows, metric, split, latent, group_size, classifier, model="mlvae"):
    for r in rows:
        if (r["metric"] == metric and r["model"] == model and r["split"] == split and r["latent"] == latent
                and r["group_size"] == group_size and (classifier is None or r["classifier"] == classifier)):
            return float(r["value"]), float(r.get("sd", 0) or 0), int(r.get("n", 1) or 1)
    return None


def wall(rows):
    for r in rows:
        if r["metric"] == "wall_seconds":
            return float(r["value"]), float(r.get("sd", 0) or 0)
    return None


ORDER = ["mlvae", "beta_s2", "beta_s4", "beta_s8", "beta_s16", "beta_s32", "style2_content18", "style18_content2",
         "cand_s2c18_b16", "cand_s2c18_b32", "cand_preset_group8", "preset_disentangled", "group2", "group4", "group8", "group_variable", "per_observation",
         "epochs3", "epochs20", "conv28", "gvae", "ada_mlvae", "ada_gvae", "cycle"]
points = []
names = sorted(os.listdir(out), key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
for name in names:
    path = os.path.join(out, name, "results.csv")
    if os.path.isfile(path) and name != "paper_eval":
        points.append((name, load(path)))

head = "| point | " + " | ".join(c[0] for c in COLUMNS) + " | seeds | wall s / seed |"
print(head)
print("|" + "---|" * (len(COLUMNS) + 3))
for name, rows in points:
    cells = []
    seeds = 0
    for _, metric, split, latent, gs, clf in COLUMNS:
        v = get(rows, metric, split, latent, gs, clf)
        if v is None:
            cells.append("–")
        else:
            decimals = 1 if metric.startswith("is_") else 3
            cells.append(f"{v[0]:.{decimals}f} ± {v[1]:.{decimals}f}")
            seeds = max(seeds, v[2])
    w = wall(rows)
    print(f"| {name} | " + " | ".join(cells) + f" | {seeds} | " + (f"{w[0]:.0f} ± {w[1]:.0f}" if w else "–") + " |")

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib missing: no figure", file=sys.stderr)
    sys.exit(0)

fig, ax = plt.subplots(figsize=(8, 5.5))
for name, rows in points:
    s = get(rows, "accuracy", "test", "style", "1", "logreg")
    ll = get(rows, "is_log_likelihood_per_image", "test", "", "1", None)
    c = get(rows, "accuracy", "test", "content", "1", "logreg")
    if s is None or ll is None:
        continue
    color = "tab:green" if c and c[0] >= 0.75 else "tab:red"
    ax.errorbar(ll[0], s[0], xerr=ll[1], yerr=s[1], fmt="o", color=color, capsize=3)
    ax.annotate(name, (ll[0], s[0]), textcoords="offset points", xytext=(4, -10 if name == "cand_s2c18_b32" else 4),
                fontsize=7)
ax.axhline(0.29, color="black", ls="--", lw=0.8, label="target: style logreg ≤ 0.29 (2× chance)")
ax.axhline(1 / 7, color="grey", ls=":", lw=0.8, label="chance 1/7")
ax.set_xlabel("test IS log p(x) per image (nats, K=20, 500 images; higher is better)")
ax.set_ylabel("style accuracy, logistic regression (7 classes)")
ax.set_title("Style leakage vs likelihood (mean ± sd over seeds)\ngreen: single-image content logreg ≥ 0.75, red: below")
ax.legend(fontsize=8, loc="best")
fig.tight_layout()
os.makedirs(fig_dir, exist_ok=True)
fig.savefig(os.path.join(fig_dir, "style_leakage_tradeoff.png"), dpi=120)
print(f"wrote {os.path.join(fig_dir, 'style_leakage_tradeoff.png')}", file=sys.stderr)
