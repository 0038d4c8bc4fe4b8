#!/usr/bin/env python3
"""Writes the tiny inputs of the examples' end-to-end tests into DIR (standard library only):
  idx/        a 300-image training and 40-image test set in Fashion-MNIST's IDX layout (10 classes, 8x8
              blocks drawn at a class-dependent place, upscaled into 28x28 images)
  tinytest/   the same training set with a 5-image test split (smaller than any fixed index)
  empty/      IDX files holding 0 images
  blobs.npy   120 x 6 float32 in Fortran order; groups.csv one group key per row (3 groups)
  images.npy  90 x 8 x 8 uint8 images (C order); image_groups.npy their keys (float64, 3 groups)
  table.csv   a header, 5 numeric columns, a text group column 'site' and a label column 'kind'
  bad_range.csv  values up to 3.0 (outside a Bernoulli likelihood's [0, 1])
  one_class.csv  every row in the same group
  one_label.csv  three groups, every row with the same class label
Usage: make_tiny_data.py DIR
"""
import os
import random
import struct
import sys


def write_idx(path, dims, data):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(bytes(data))


def write_npy(path, descr, shape, values, fortran=False):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (
        descr, "True" if fortran else "False", ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    fmt = {"<f4": "<f", "<f8": "<d", "|u1": "B"}[descr]
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%d%s" % (len(values), fmt[-1]), *values) if fmt != "B" else bytes(values))


def image(label, rng):
    px = [0] * 784
    r0, c0 = 2 + 2 * (label // 5) * 5, 2 + 4 * (label % 5)
    for r in range(r0, min(28, r0 + 8)):
        for c in range(c0, min(28, c0 + 8)):
            px[r * 28 + c] = min(255, 180 + rng.randrange(76))
    for _ in range(20):
        px[rng.randrange(784)] = rng.randrange(120)
    return px


def idx_dir(path, n_train, n_test, rng):
    os.makedirs(path, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = [i % 10 for i in range(n)]
        write_idx(os.path.join(path, prefix + "-images-idx3-ubyte"), [n, 28, 28],
                  [p for l in labels for p in image(l, rng)])
        write_idx(os.path.join(path, prefix + "-labels-idx1-ubyte"), [n], labels)


def main(out):
    rng = random.Random(7)
    os.makedirs(out, exist_ok=True)
    idx_dir(os.path.join(out, "idx"), 300, 40, rng)
    idx_dir(os.path.join(out, "tinytest"), 300, 5, rng)
    idx_dir(os.path.join(out, "empty"), 0, 0, rng)

    n, d = 120, 6
    groups = [i % 3 for i in range(n)]
    rows = [[3.0 * g + (j % 2) * 0.5 * g + rng.gauss(0, 1) for j in range(d)] for g in groups]
    write_npy(os.path.join(out, "blobs.npy"), "<f4", (n, d), [rows[i][j] for j in range(d) for i in range(n)],
              fortran=True)
    with open(os.path.join(out, "groups.csv"), "w") as f:
        f.write("group\n" + "".join("g%d\n" % g for g in groups))

    imgs, keys = [], []
    for i in range(90):
        k = i % 3
        keys.append(float(k))
        imgs += [200 if (r // 3 == k) else rng.randrange(40) for r in range(8) for _ in range(8)]
    write_npy(os.path.join(out, "images.npy"), "|u1", (90, 8, 8), imgs)
    write_npy(os.path.join(out, "image_groups.npy"), "<f8", (90,), keys)

    with open(os.path.join(out, "table.csv"), "w") as f:
        f.write("a,b,site,c,d,kind,e\n")
        for i in range(150):
            site = ["north", "south", "east"][i % 3]
            base = {"north": 0.0, "south": 4.0, "east": -4.0}[site]
            v = [base + rng.gauss(0, 1) for _ in range(5)]
            f.write("%.4f,%.4f,%s,%.4f,%.4f,%s,%.4f\n" % (v[0], v[1], site, v[2], v[3], "x" if i % 2 else "y", v[4]))
    with open(os.path.join(out, "bad_range.csv"), "w") as f:
        f.write("p,q,key\n" + "".join("%.2f,0.5,%d\n" % (3.0 if i == 7 else 0.5, i % 2) for i in range(20)))
    with open(os.path.join(out, "one_class.csv"), "w") as f:
        f.write("p,q,key\n" + "".join("%.2f,%.2f,1\n" % (rng.random(), rng.random()) for i in range(20)))
    with open(os.path.join(out, "one_label.csv"), "w") as f:
        f.write("p,q,key,kind\n" + "".join("%.2f,%.2f,%d,same\n" % (rng.random(), rng.random(), i % 3)
                                          for i in range(30)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
