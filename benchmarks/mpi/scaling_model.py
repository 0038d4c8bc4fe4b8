#!/usr/bin/env python3
"""Paper model of data-parallel step time on N machines (docs/performance.md, "Scaling model").

  T_N = t_c(B) / N + t_allreduce(N),   t_allreduce(N) = 2 (N-1) alpha + 2 (N-1)/N * M / beta

(ring allreduce: 2(N-1) messages of M/N bytes each way), efficiency E(N) = t_c(B) / (N T_N).
t_c(B) is the measured compute time of a step of B images on one machine, assumed to scale
linearly in B (optimistic for small per-machine batches, where GEMMs get narrow); M is the
gradient plus loss sums in bytes (measured by bench_data_parallel). No overlap of the allreduce
with the backward pass (the implementation does not overlap). Prints a Markdown table.
Usage: /usr/bin/python3 benchmarks/mpi/scaling_model.py
"""

# Measured on this machine (docs/performance.md): one 2-thread machine, batch of 256 images.
MODELS = {
    # name: (seconds per 256-image step at 2 threads, bytes reduced per step)
    "mlp": (256 / 36564, 3_263_320),
    "conv28": (256 / 2856, 6_765_500),
}
NETWORKS = {
    # name: (bandwidth in bytes/s, latency per message in s)
    "10 Gbit/s, 50 us": (10e9 / 8, 50e-6),
    "100 Gbit/s, 5 us": (100e9 / 8, 5e-6),
}
BATCHES = [256, 1024, 4096, 16384]  # images = groups x 16
GROUP = 16


def allreduce(n, m, beta, alpha):
    return 0.0 if n == 1 else 2 * (n - 1) * alpha + 2 * (n - 1) / n * m / beta


def efficiency(n, tc, m, beta, alpha):
    return tc / (n * (tc / n + allreduce(n, m, beta, alpha)))


def largest_n(tc, m, beta, alpha, groups, target=0.8):
    best = 1
    for n in range(1, groups + 1):  # every machine needs at least one whole group
        if efficiency(n, tc, m, beta, alpha) >= target:
            best = n
    return best


print("| model | network | global batch (groups) | compute/step on 1 machine | allreduce at N=2 | "
      "E(2) | E(8) | largest N with E >= 80 % | speed-up there |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
for name, (t256, m) in MODELS.items():
    for net, (beta, alpha) in NETWORKS.items():
        for b in BATCHES:
            tc = t256 * b / 256
            groups = b // GROUP
            n = largest_n(tc, m, beta, alpha, groups)
            e8 = efficiency(8, tc, m, beta, alpha) if groups >= 8 else float("nan")
            print(f"| {name} | {net} | {b} ({groups}) | {tc * 1e3:.1f} ms | "
                  f"{allreduce(2, m, beta, alpha) * 1e3:.2f} ms | {efficiency(2, tc, m, beta, alpha) * 100:.0f} % | "
                  f"{e8 * 100:.0f} % | {n} | {n * efficiency(n, tc, m, beta, alpha):.1f}x |")
