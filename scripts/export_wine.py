#!/usr/bin/python3
"""Writes scikit-learn's bundled wine table (178 wines, 13 chemical measurements, 3 cultivars) as CSV
with a header and a 'cultivar' column. Debian: python3-sklearn. Usage: export_wine.py OUT.csv"""
import csv, os, sys
from sklearn.datasets import load_wine

wine = load_wine()
os.makedirs(os.path.dirname(os.path.abspath(sys.argv[1])), exist_ok=True)
with open(sys.argv[1], "w", newline="") as f:
    csv.writer(f).writerows([list(wine.feature_names) + ["cultivar"]] +
                            [row + [wine.target_names[t]] for row, t in zip(wine.data.tolist(), wine.target)])
