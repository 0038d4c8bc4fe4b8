#!/usr/bin/python3
"""PyTorch reference for benchmarks/bench_mlvae_step.cpp: the same ML-VAE training step
(forward + backward + Adam) in float32 on the CPU, timed the same way; with --device cuda the
reference for benchmarks/bench_cuda_step.cu at its best (see "On the GPU" below).

Models (identical to mlvae's):
  --arch mlp     make_mlp_mlvae<float>(784, 500, 10, 10): encoder Linear(784,500)+tanh, style head
                 Linear(500,20) -> [mean; logvar], content head Linear(500,20) -> [mean; logvar],
                 decoder Linear(20,500)+tanh+Linear(500,784) -> Bernoulli logits.
  --arch conv28  make_conv28_mlvae<float>(10, 10): trunk Conv2d(1,32,4,2,1)+ReLU,
                 Conv2d(32,64,4,2,1)+ReLU, Linear(3136,256)+ReLU; heads Linear(256,20) x2; decoder
                 Linear(20,256)+ReLU, Linear(256,3136)+ReLU, reshape 64x7x7,
                 ConvTranspose2d(64,32,4,2,1)+ReLU, ConvTranspose2d(32,1,4,2,1) -> logits.

Objective (docs/MODELS.md §1): product-of-Gaussians group posterior (precision weighted), one
content sample per group shared by its members, one style sample per image, Bernoulli
log-likelihood x*l - softplus(l), loss = -(sum recon - sum KL_style - sum KL_content) / G. Adam,
lr 1e-3. Groups are contiguous equal-size blocks of the batch, so the group posterior is a
reshape to [G, n, d] and two reductions.

On the CPU (the default) one configuration per run, chosen by the flags below. Runs under any
interpreter with torch: Debian's (/usr/bin/python3, python3-torch 1.13 on the system OpenBLAS) or
a virtual environment with a current PyTorch 2.x wheel (bundled MKL/oneDNN).
scripts/run_benchmarks.sh runs every configuration (docs/performance.md, "The configurations").
  --compile      torch.compile the loss (forward and, through AOTAutograd, backward; inductor
                 generates C++/OpenMP kernels); the compile happens during the warm-up steps.
  --fused-adam   torch.optim.Adam(fused=True) (one kernel for all parameters; PyTorch >= 2.4).
  --show-config  print torch.__config__.show() and the thread settings, then exit.
  --bf16         torch.autocast("cpu", dtype=torch.bfloat16) around the loss: Linear/conv in
                 bfloat16 (oneDNN, AMX where the CPU has it), reductions and the loss in float32;
                 the reference for mlvae's optional bfloat16 products (--precision bf16).
Prints:  # <kernels line: torch version, threads, BLAS, OpenBLAS core, CPU capability, OMP_WAIT_POLICY>
         RESULT pytorch <arch>[_compile] images_per_s=<median> best_images_per_s=.. ms_per_step=..
         threads=.. cpu_ms_per_step=.. images_per_cpu_s=..   (process CPU time: robust to other load)

On the GPU (--device cuda[:N]; scripts/run_gpu.sh runs it): float32 with TF32 off for matmuls and
cuDNN, cuDNN's autotuner on (--no-cudnn-benchmark: off), the batch a tensor on the GPU, and every
configuration of --modes (default all three) at
every batch of --groups (a comma list, e.g. 16,64,256,1024), in one process:
  eager          eager PyTorch, Adam(fused=True): one kernel for the whole update.
  compile        torch.compile of the loss (inductor's Triton kernels for forward and backward),
                 Adam(fused=True) eager; compiled during the warm-up steps (--compile-mode).
  graph          the whole step (forward, backward, Adam(capturable=True, fused=True)) captured
                 once in one CUDA graph and replayed: no launch overhead; the noise is redrawn on
                 every replay (PyTorch's graph-safe Philox offsets).
  compile_graph  (opt-in) the compiled loss plus the step captured in one CUDA graph.
--compile-groups limits the compile modes to some of the batches (each is a fresh compile).
A configuration that fails prints "RESULT pytorch <arch>_<mode> groups=G failed: <why>" and the
others go on. Prints the versions (torch, CUDA, cuDNN, device), then per configuration and batch:
         RESULT pytorch <arch>_<mode> groups=G group_size=K images_per_s=<median of --reps>
         best_images_per_s=.. ms_per_step=.. device=cuda:N
--compile on the GPU means --modes compile; --fused-adam is implied there (eager is always fused).
"""
import argparse
import ctypes
import importlib
import math
import os
import statistics
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F


def openblas_core():
    """The kernel set OpenBLAS chose ("" when PyTorch does not use OpenBLAS)."""
    torch.ones(64, 64) @ torch.ones(64, 64)  # make sure the BLAS is loaded
    try:
        with open(f"/proc/{os.getpid()}/maps") as f:
            libs = {line.split()[-1] for line in f if "libopenblas" in line}
        for lib in libs:
            handle = ctypes.CDLL(lib)
            handle.openblas_get_corename.restype = ctypes.c_char_p
            return handle.openblas_get_corename().decode()
    except OSError:
        pass
    return ""


def fix_openblas(threads):
    """Make PyTorch's system OpenBLAS behave: (1) Debian 12's OpenBLAS 0.3.21 does not recognise
    recent Xeons (e.g. family 6 model 207) and falls back to its SSE3 "Prescott" kernels, ~8x
    slower than its AVX-512 ones, which every Linear layer would then run on; (2) the pthread
    OpenBLAS starts its own threads, which torch.set_num_threads does not limit, so "1 thread"
    would silently use all cores. Re-executes once with OPENBLAS_CORETYPE (when mis-detected) and
    OPENBLAS_NUM_THREADS=threads set, so the comparison is against a properly configured PyTorch."""
    if os.environ.get("MLVAE_BENCH_REEXEC") == "1":
        return
    env = dict(os.environ, MLVAE_BENCH_REEXEC="1", OPENBLAS_NUM_THREADS=str(threads))
    core = openblas_core()
    if "OPENBLAS_CORETYPE" not in os.environ and core.lower() in ("prescott", "core2", "nehalem"):
        flags = set()
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
        best = ("Cooperlake" if "avx512_bf16" in flags else "SkylakeX") if "avx512f" in flags else (
            "Haswell" if "avx2" in flags else "")
        if best:
            env["OPENBLAS_CORETYPE"] = best
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def kernels_line(threads):
    """One line naming what actually computes: version, threads, BLAS (and OpenBLAS's kernel set),
    oneDNN, the CPU capability ATen dispatches to, and the OpenMP wait policy."""
    cfg = torch.__config__.show()
    blas = "unknown"
    for line in cfg.splitlines():
        if "BLAS_INFO" in line:
            blas = line.split("BLAS_INFO=")[1].split(",")[0]
    core = openblas_core()
    if core:
        blas += f" (OpenBLAS {core} kernels, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})"
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # PyTorch 1.x
        capability = next((l.split(":")[1].strip() for l in cfg.splitlines() if "CPU capability usage" in l), "?")
    onednn = next((l.strip(" -").split(" (Git")[0] for l in cfg.splitlines() if "oneDNN" in l or "MKL-DNN" in l), "none")
    return (f"# torch {torch.__version__}, threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), "
            f"BLAS_INFO={blas}, {onednn}, CPU capability {capability}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")


def make_mlp(style, content):
    trunk = nn.Sequential(nn.Linear(784, 500), nn.Tanh())
    heads = nn.Linear(500, 2 * style), nn.Linear(500, 2 * content)
    decoder = nn.Sequential(nn.Linear(style + content, 500), nn.Tanh(), nn.Linear(500, 784))
    return trunk, heads, decoder, (784,)


def make_conv28(style, content):
    trunk = nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(3136, 256), nn.ReLU())
    heads = nn.Linear(256, 2 * style), nn.Linear(256, 2 * content)
    decoder = nn.Sequential(
        nn.Linear(style + content, 256), nn.ReLU(),
        nn.Linear(256, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, 1, 4, 2, 1))
    return trunk, heads, decoder, (1, 28, 28)


class MLVAE(nn.Module):
    def __init__(self, arch, style=10, content=10):
        super().__init__()
        trunk, (sh, ch), decoder, self.shape = {"mlp": make_mlp, "conv28": make_conv28}[arch](style, content)
        self.trunk, self.style_head, self.content_head, self.decoder = trunk, sh, ch, decoder
        self.S, self.C = style, content

    def loss(self, x, groups):
        n_img = x.shape[0]
        per = n_img // groups
        h = self.trunk(x)
        so, co = self.style_head(h), self.content_head(h)
        s_mean, s_logvar = so[:, :self.S], so[:, self.S:]
        c_mean, c_logvar = co[:, :self.C], co[:, self.C:]
        # Product of Gaussians per group: precisions add, means are precision weighted.
        lam = torch.exp(-c_logvar).view(groups, per, self.C)
        lam_g = lam.sum(1)
        g_logvar = -torch.log(lam_g)
        g_mean = (lam * c_mean.view(groups, per, self.C)).sum(1) / lam_g
        # One style sample per image, one content sample per group shared by its members.
        z_s = s_mean + torch.exp(0.5 * s_logvar) * torch.randn_like(s_mean)
        z_c = g_mean + torch.exp(0.5 * g_logvar) * torch.randn_like(g_mean)
        z = torch.cat([z_s, z_c.repeat_interleave(per, 0, output_size=n_img)], 1)  # output_size: no sync on the GPU
        logits = self.decoder(z).reshape(x.shape)
        recon = (x * logits - F.softplus(logits)).sum()
        kl_s = 0.5 * (s_mean.square() + s_logvar.exp() - 1 - s_logvar).sum()
        kl_c = 0.5 * (g_mean.square() + g_logvar.exp() - 1 - g_logvar).sum()
        return -(recon - kl_s - kl_c) / groups


# ---- On the GPU ---------------------------------------------------------------------------------

CUDA_MODES = ("eager", "compile", "graph", "compile_graph")


def cuda_versions_line(device):
    """torch, CUDA, cuDNN, the device, and the float32 settings in force."""
    props = torch.cuda.get_device_properties(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "none"
    return (f"# torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {cudnn}, device {props.name} "
            f"(sm_{props.major}{props.minor}, {props.multi_processor_count} SMs, "
            f"{props.total_memory / 2**30:.0f} GiB), TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
            f"TF32 cuDNN {torch.backends.cudnn.allow_tf32}, float32 matmul precision "
            f"{torch.get_float32_matmul_precision()}, cuDNN benchmark {torch.backends.cudnn.benchmark}")


def bench_cuda(a, mode, groups, device):
    """One configuration at one batch: returns (median s/step, best s/step, warm-up s, last loss)."""
    torch.manual_seed(0)
    model = MLVAE(a.arch).to(device)
    n = groups * a.group_size
    x = torch.rand((n,) + model.shape, dtype=torch.float32, device=device)  # the batch lives on the GPU
    graphed = mode in ("graph", "compile_graph")
    compiled = mode in ("compile", "compile_graph")
    # fused: one kernel for the whole update; capturable: step count and bias corrections on the
    # device, so the update can be captured and replayed.
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, capturable=graphed)
    loss_fn = model.loss
    if compiled:
        importlib.import_module("torch._dynamo").reset()  # a fresh, static-shape compile for this batch (no dynamic-shape kernels)
        loss_fn = torch.compile(model.loss, dynamic=False,
                                mode=None if a.compile_mode == "default" else a.compile_mode)
    sync = lambda: torch.cuda.synchronize(device)

    def eager_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x, groups)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    if graphed:
        # The recipe of PyTorch's CUDA-graph notes: warm up on a side stream (allocations, compile,
        # Adam's state), then capture forward, backward and Adam once; .grad is None at capture, so
        # backward writes fresh gradients into the graph's pool on every replay.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(max(3, a.warmup)):
                eager_step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            static_loss = loss_fn(x, groups)
            static_loss.backward()
            opt.step()
        for _ in range(a.warmup):
            graph.replay()

        def step():
            graph.replay()
            return static_loss
    else:
        step = eager_step
        for _ in range(a.warmup):
            step()
    sync()
    warmup_s = time.perf_counter() - t0
    per_step = []
    loss = None
    for _ in range(a.reps):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = step()
        sync()
        per_step.append((time.perf_counter() - t0) / a.steps)
    last = float(loss.item())
    if not math.isfinite(last):
        raise RuntimeError(f"the loss is not finite ({last})")
    return statistics.median(per_step), min(per_step), warmup_s, last


def run_cuda(a, groups_list):
    """--device cuda: every mode at every batch, one RESULT line each; returns the exit status."""
    if not torch.cuda.is_available():
        print(f"RESULT pytorch unavailable: no CUDA device found (torch {torch.__version__}, "
              f"built with CUDA {torch.version.cuda})")
        return 77
    device = torch.device(a.device)
    if device.index is None:  # "cuda": the current device, named by its index (set_device needs one)
        device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.set_device(device)
    # float32 as mlvae computes it: no TF32 in cuBLAS or cuDNN.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    # cuDNN's autotuner picks the fastest convolution algorithms for each shape (during the warm-up).
    torch.backends.cudnn.benchmark = not a.no_cudnn_benchmark
    if a.show_config:
        print(torch.__config__.show())
        print(cuda_versions_line(device))
        return 0
    modes = a.modes.split(",") if a.modes else (["compile"] if a.compile else ["eager", "compile", "graph"])
    unknown = [m for m in modes if m not in CUDA_MODES]
    if unknown:
        print(f"pytorch_mlvae.py: unknown --modes {','.join(unknown)} (expected some of {','.join(CUDA_MODES)})",
              file=sys.stderr)
        return 2
    if any(m in ("compile", "compile_graph") for m in modes):
        dynamo = importlib.import_module("torch._dynamo")  # torch.compile's front end
        for name in ("cache_size_limit", "recompile_limit"):  # one model per batch: no silent eager fallback
            if hasattr(dynamo.config, name):
                setattr(dynamo.config, name, 64)
    print(cuda_versions_line(device))
    sys.stdout.flush()
    compile_groups = set(int(g) for g in a.compile_groups.split(",")) if a.compile_groups else set(groups_list)
    failed = 0
    for groups in groups_list:
        for mode in modes:
            if mode in ("compile", "compile_graph") and groups not in compile_groups:
                continue
            n = groups * a.group_size
            tag = f"{a.arch}_{mode}"
            try:
                med, best, warmup_s, loss = bench_cuda(a, mode, groups, device)
                print(f"RESULT pytorch {tag} groups={groups} group_size={a.group_size} images_per_s={n / med:.1f} "
                      f"best_images_per_s={n / best:.1f} ms_per_step={med * 1e3:.4f} device={a.device} "
                      f"steps={a.steps} reps={a.reps} warmup_s={warmup_s:.1f} loss={loss:.4f}")
            except Exception as e:  # one configuration failing must not hide the others
                failed += 1
                why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                print(f"RESULT pytorch {tag} groups={groups} group_size={a.group_size} failed: {why}")
            sys.stdout.flush()
            torch.cuda.empty_cache()
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=50, help="timed steps per repetition")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median and best reported)")
    p.add_argument("--groups", default="16",
                   help="groups per batch; on the GPU a comma list (16,64,256,1024) runs each in turn")
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--arch", choices=["mlp", "conv28"], default="mlp")
    p.add_argument("--jit", action="store_true", help="torch.jit.script the model (same math)")
    p.add_argument("--device", default="cpu",
                   help="cpu, or cuda[:N] (needs a CUDA build of PyTorch; Debian's python3-torch is CPU only)")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (PyTorch 2.x)")
    p.add_argument("--fused-adam", action="store_true", help="Adam(fused=True) (PyTorch >= 2.4)")
    p.add_argument("--show-config", action="store_true", help="print torch.__config__.show() and exit")
    p.add_argument("--bf16", action="store_true", help="autocast the loss to bfloat16 on the CPU")
    p.add_argument("--keep-blas", action="store_true",
                   help="leave OpenBLAS kernel detection and threading alone (see fix_openblas)")
    p.add_argument("--modes", default=None,
                   help="GPU only: comma list of eager, compile, graph, compile_graph (default eager,compile,graph)")
    p.add_argument("--compile-groups", default=None,
                   help="GPU only: run the compile modes only at these batches (comma list; default: all of --groups);"
                        " each batch is a fresh compile of tens of seconds")
    p.add_argument("--no-cudnn-benchmark", action="store_true",
                   help="GPU only: leave torch.backends.cudnn.benchmark off (default on: autotuned convolutions)")
    p.add_argument("--compile-mode", default="default",
                   help="GPU only: torch.compile mode of the compile modes (default, max-autotune-no-cudagraphs, ...)")
    a = p.parse_args()
    try:
        groups_list = [int(g) for g in str(a.groups).split(",")]
    except ValueError:
        p.error(f"--groups: expected an integer or a comma list of integers, found '{a.groups}'")
    if min(groups_list) < 1 or a.group_size < 1 or a.steps < 1 or a.reps < 1 or a.warmup < 0:
        p.error("--groups, --group-size, --steps and --reps must be positive, --warmup non-negative")
    cuda = a.device.startswith("cuda")
    if cuda:
        sys.exit(run_cuda(a, groups_list))
    if len(groups_list) != 1:
        p.error("--groups: a list of batches is for --device cuda; on the CPU run one batch per process")
    a.groups = groups_list[0]
    if not a.keep_blas:
        fix_openblas(a.threads)

    torch.set_num_threads(a.threads)
    if a.show_config:
        print(torch.__config__.show())
        print(torch.__config__.parallel_info())
        print(kernels_line(a.threads))
        return
    torch.manual_seed(0)
    device = torch.device(a.device)
    model = MLVAE(a.arch).to(device)
    n = a.groups * a.group_size
    x = torch.rand((n,) + model.shape, dtype=torch.float32, device=device)
    sync = lambda: None  # the CPU runs synchronously
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if a.fused_adam else {}))
    loss_fn = model.loss
    if a.jit:
        scripted = torch.jit.script(model)
        loss_fn = scripted.loss
    if a.compile:
        loss_fn = torch.compile(model.loss)

    def step():
        opt.zero_grad(set_to_none=True)
        if a.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(x, a.groups)
        else:
            loss = loss_fn(x, a.groups)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    sync()
    warmup_s = time.perf_counter() - t0
    per_step, cpu = [], []
    for _ in range(a.reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.steps):
            step()
        sync()
        per_step.append((time.perf_counter() - t0) / a.steps)
        cpu.append((time.process_time() - c0) / a.steps)
    med, best = statistics.median(per_step), min(per_step)
    params = sum(q.numel() for q in model.parameters())
    print(f"{kernels_line(a.threads)}, {params} parameters, batch {n}, warm-up {warmup_s:.1f} s")
    print(f"RESULT pytorch {a.arch}{'_jit' if a.jit else ''}{'_compile' if a.compile else ''}{'_bf16' if a.bf16 else ''} images_per_s={n / med:.1f} "
          f"best_images_per_s={n / best:.1f} ms_per_step={med * 1e3:.4f} threads={a.threads} device={a.device} "
          f"cpu_ms_per_step={min(cpu) * 1e3:.4f} images_per_cpu_s={n / min(cpu):.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
