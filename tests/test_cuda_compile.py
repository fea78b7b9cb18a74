"""The CUDA kernels without a GPU: nvcc builds them for sm_90 without register spills, and a host
emulator runs their block programs against float64 references.

The kernels in csrc/cuda/*_kernel.cu are block programs written against an execution context
(csrc/cuda/kernel_common.cuh). The emulator below supplies a host context -- one std::thread per
CUDA thread, std::barrier for __syncthreads and for the warp shuffles, shared memory pre-filled
with NaN and fenced by a canary -- and runs the identical code on the CPU. It checks the FFT
plans, the real-FFT packing, the layouts, the split/tile bookkeeping and the reductions; it cannot
check what only hardware shows (timing, memory coalescing, the CUDA math library, launch limits),
which tests/test_cuda_ops.py covers on a GPU.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA_SRC = ROOT / "csrc" / "cuda"
KERNELS = sorted(CUDA_SRC.glob("*_kernel.cu"))


def _find_nvcc():
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


NVCC = _find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found (put it on PATH or set CUDA_HOME)")

SM90 = ["-std=c++17", "-gencode=arch=compute_90,code=sm_90"]


def _start(args, cwd):
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=900):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


# ---- nvcc / ptxas -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ptxas_reports(tmp_path_factory):
    """nvcc -c -Xptxas -v output of every *_kernel.cu (compiled in parallel)."""
    out_dir = tmp_path_factory.mktemp("ptxas")
    procs = {
        k.name: _start([NVCC, *SM90, "-O3", "-Xptxas", "-v", "-c", str(k), "-o", str(out_dir / (k.stem + ".o"))], ROOT)
        for k in KERNELS
    }
    return {name: _finish(p) for name, p in procs.items()}


def test_kernel_sources_present():
    assert {k.name for k in KERNELS} == {"isib_kernel.cu", "value_loss_kernel.cu"}


@pytest.mark.parametrize("kernel", [k.name for k in KERNELS])
def test_kernel_compiles_for_sm90_without_spills(ptxas_reports, kernel):
    rc, out = ptxas_reports[kernel]
    assert rc == 0, out
    assert "warning" not in out.lower(), out
    entries = re.findall(r"Compiling entry function '(\w+)' for 'sm_90'", out)
    assert entries, out
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
    assert len(spills) >= len(entries), out
    assert all(s == "0" and l == "0" for s, l in spills), out


# ---- host emulator ----------------------------------------------------------------------------
HOST_CTX = r"""
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct HostBlock {
  int nthreads;
  int64_t bid, nblocks;
  std::barrier<> block_bar;
  std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
  std::vector<double> scratch;
  HostBlock(int n, int64_t b, int64_t nb) : nthreads(n), bid(b), nblocks(nb), block_bar(n), scratch(n) {
    for (int w = 0; w < n / 32; ++w) warp_bars.emplace_back(std::make_unique<std::barrier<>>(32));
  }
};

struct HostCtx {
  HostBlock* b;
  int tid;
  int thread() const { return tid; }
  int64_t block() const { return b->bid; }
  int64_t blocks() const { return b->nblocks; }
  int lane() const { return tid % 32; }
  int warp() const { return tid / 32; }
  int warps() const { return b->nthreads / 32; }
  void sync() const { b->block_bar.arrive_and_wait(); }
  template <typename I, class F>
  void for_each(I n, F&& f) const {
    for (I i = tid; i < n; i += b->nthreads) f(i);
  }
  template <typename R>
  R* exchange(R v, R* vals) const {  // all 32 lane values of this warp, in lane order
    R* sc = reinterpret_cast<R*>(b->scratch.data()) + warp() * 32;
    sc[lane()] = v;
    b->warp_bars[warp()]->arrive_and_wait();
    std::memcpy(vals, sc, 32 * sizeof(R));
    b->warp_bars[warp()]->arrive_and_wait();
    return vals;
  }
  template <typename R>
  R warp_sum(R v) const {  // the xor butterfly of __shfl_xor_sync, in the same order
    R vals[32], next[32];
    exchange(v, vals);
    for (int off = 16; off > 0; off /= 2) {
      for (int l = 0; l < 32; ++l) next[l] = vals[l] + vals[l ^ off];
      std::memcpy(vals, next, sizeof(vals));
    }
    return vals[lane()];
  }
  template <typename R>
  R warp_max(R v) const {
    R vals[32];
    exchange(v, vals);
    R m = vals[0];
    for (int l = 1; l < 32; ++l) m = std::fmax(m, vals[l]);
    return m;
  }
};

// body(ctx, smem) for every block; shared memory starts as NaN and is followed by a canary.
template <class Body>
void run_grid(int64_t grid, int threads, size_t smem_bytes, Body body) {
  constexpr size_t kCanary = 512;
  const size_t words = (smem_bytes + 7) / 8;
  std::vector<double> smem(words + kCanary);
  for (int64_t bid = 0; bid < grid; ++bid) {
    std::memset(smem.data(), 0xff, words * sizeof(double));
    std::memset(smem.data() + words, 0x5a, kCanary * sizeof(double));
    HostBlock blk(threads, bid, grid);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { body(HostCtx{&blk, t}, reinterpret_cast<unsigned char*>(smem.data())); });
    for (auto& th : pool) th.join();
    const unsigned char* c = reinterpret_cast<const unsigned char*>(smem.data() + words);
    for (size_t i = 0; i < kCanary * sizeof(double); ++i) {
      if (c[i] != 0x5a) {
        std::fprintf(stderr, "shared memory overflow in block %lld\n", static_cast<long long>(bid));
        std::exit(3);
      }
    }
  }
}

static std::vector<double> read_doubles(const char* path) {
  std::vector<double> v;
  FILE* f = std::fopen(path, "rb");
  double x;
  while (f != nullptr && std::fread(&x, sizeof x, 1, f) == 1) v.push_back(x);
  if (f != nullptr) std::fclose(f);
  return v;
}

static void write_doubles(const char* path, const std::vector<double>& v) {
  FILE* f = std::fopen(path, "wb");
  std::fwrite(v.data(), sizeof(double), v.size(), f);
  std::fclose(f);
}
"""

VALUE_EMU = r"""
// value_emu MODE DTYPE OUTER H INNER TIME_CONTIG ALPHA TILE THREADS GRID IN OUT
//   MODE value | value_nograd | bins | bins_bwd; DTYPE f16 | bf16 | f32 | f64.
//   IN (float64, logical [outer, H, inner] order): input then target, or for bins_bwd grad_modulus
//   [outer, F, inner] then phase [outer, F, inner, 2]. TIME_CONTIG=1 stores input and target
//   physically as [outer, inner, H]. OUT (float64): rows then grad | modulus then phase | grad.
#include "host_ctx.h"
#include "value_loss_kernel.cu"

using namespace ddtime::kernels;

template <typename T>
int run(char** argv) {
  using R = opmath_t<T>;
  const std::string mode = argv[1];
  const int64_t outer = std::atoll(argv[3]), H = std::atoll(argv[4]), inner = std::atoll(argv[5]);
  const bool time_contig = std::atoi(argv[6]) != 0;
  const double alpha = std::atof(argv[7]);
  Config cfg;
  cfg.tile = std::atoi(argv[8]);
  cfg.threads = std::atoi(argv[9]);
  const std::vector<double> in = read_doubles(argv[11]);
  const int64_t F = H / 2 + 1, n = outer * H * inner, nf = outer * F * inner;
  SeriesParams<T> p = make_params<T>(SeriesShape{outer, H, inner}, cfg, nullptr);
  const int64_t grid = std::min<int64_t>(p.num_tiles, std::atoll(argv[10]));
  const size_t smem = table_bytes<R>(H) + series_bytes<R>(p.M) * cfg.tile;
  std::vector<T> a, b, out;
  std::vector<R> rows, phase;
  std::vector<double> result;
  if (mode == "bins_bwd") {
    for (int64_t e = 0; e < nf; ++e) a.push_back(detail::from_op<T>(static_cast<R>(in[e])));
    for (int64_t e = 0; e < 2 * nf; ++e) phase.push_back(static_cast<R>(in[nf + e]));
    out.resize(n);
    p.a = a.data();
    p.sa = Strides3{F * inner, inner, 1};
    p.phase_in = phase.data();
    p.out = out.data();
    run_grid(grid, cfg.threads, smem, [&](const HostCtx& c, unsigned char* s) { series_block<Mode::kBinsBackward>(c, p, s); });
    for (auto v : out) result.push_back(detail::to_op(v));
  } else {
    a.resize(n);
    b.resize(n);
    const Strides3 st = time_contig ? Strides3{H * inner, 1, H} : Strides3{H * inner, inner, 1};
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t t = 0; t < H; ++t)
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t logical = (o * H + t) * inner + i, phys = o * st.outer + t * st.length + i * st.inner;
          a[phys] = detail::from_op<T>(static_cast<R>(in[logical]));
          b[phys] = detail::from_op<T>(static_cast<R>(in[n + logical]));
        }
    p.a = a.data();
    p.b = b.data();
    p.sa = p.sb = st;
    p.load_time_major = st.length != 1;
    if (mode == "bins") {
      out.resize(nf);
      phase.resize(2 * nf);
      p.out = out.data();
      p.phase_out = phase.data();
      run_grid(grid, cfg.threads, smem, [&](const HostCtx& c, unsigned char* s) { series_block<Mode::kBins>(c, p, s); });
      for (auto v : out) result.push_back(detail::to_op(v));
      for (auto v : phase) result.push_back(v);
    } else {
      rows.resize(outer * inner);
      p.rows = rows.data();
      p.alpha_over_F = static_cast<R>(alpha / p.F);
      p.mse_scale = static_cast<R>((1.0 - alpha) / p.H);
      p.grad_mse_scale = static_cast<R>(2.0 * (1.0 - alpha) / p.H);
      if (mode == "value") {
        out.resize(n);
        p.out = out.data();
      }
      run_grid(grid, cfg.threads, smem, [&](const HostCtx& c, unsigned char* s) { series_block<Mode::kValueLoss>(c, p, s); });
      for (auto v : rows) result.push_back(v);
      for (auto v : out) result.push_back(detail::to_op(v));
    }
  }
  write_doubles(argv[12], result);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 13) return 2;
  const std::string dt = argv[2];
  if (dt == "f32") return run<float>(argv);
  if (dt == "f64") return run<double>(argv);
  if (dt == "f16") return run<__half>(argv);
  return run<__nv_bfloat16>(argv);
}
"""

ISIB_EMU = r"""
// isib_emu MODE DTYPE S N L TAU SMS IN OUT
//   MODE fwd: IN x; OUT D [S*S] then loss.  bwd_pair: IN x, grad_D [S*S]; OUT grad_x.
//   bwd_isib: IN x, grad_loss, D [S*S]; OUT grad_x. All float64.
#include "host_ctx.h"
#include "isib_kernel.cu"

using namespace ddtime::kernels;

template <typename T>
int run(char** argv) {
  using R = opmath_t<T>;
  const std::string mode = argv[1];
  const int64_t S = std::atoll(argv[3]), N = std::atoll(argv[4]), L = std::atoll(argv[5]);
  const double tau = std::atof(argv[6]);
  const int sms = std::atoi(argv[7]);
  const std::vector<double> in = read_doubles(argv[8]);
  const int64_t n = S * N * L;
  std::vector<T> x(n);
  for (int64_t e = 0; e < n; ++e) x[e] = detail::from_op<T>(static_cast<R>(in[e]));
  IsibParams<T> p = base_params(x.data(), S, N, L, tau);
  std::vector<double> result;
  if (mode == "fwd") {
    const ForwardLayout f = forward_layout(S, N, L, depth<R>(), sms);
    std::vector<R> ws(f.total), D(S * S), loss(1);
    p.tiles = f.tiles;
    p.splits = f.splits;
    p.chunks_per_split = f.chunks_per_split;
    p.lse = ws.data() + f.lse;
    p.partial = ws.data() + f.partial;
    p.tile_loss = ws.data() + f.tile_loss;
    p.D = D.data();
    p.loss = loss.data();
    run_grid(warp_rows_grid(S * N), kThreads, 0, [&](const HostCtx& c, unsigned char*) { row_stats_block(c, p); });
    run_grid(f.tiles * f.tiles * f.splits, kThreads, pair_smem<R>(), [&](const HostCtx& c, unsigned char* s) { pair_tiles_block(c, p, s); });
    run_grid(f.t32 * f.t32, kThreads, finalize_smem<R>(), [&](const HostCtx& c, unsigned char* s) { finalize_block(c, p, s); });
    run_grid(1, kThreads, (kThreads / 32) * sizeof(R), [&](const HostCtx& c, unsigned char* s) { isib_total_block(c, p, s); });
    for (auto v : D) result.push_back(v);
    result.push_back(loss[0]);
  } else {
    const bool isib = mode == "bwd_isib";
    std::vector<R> ws(pairwise_kl_backward_workspace(S, N, L)), grad_D(S * S), D(S * S), grad_loss(1);
    std::vector<T> grad_x(n);
    if (isib) {
      grad_loss[0] = static_cast<R>(in[n]);
      for (int64_t e = 0; e < S * S; ++e) D[e] = static_cast<R>(in[n + 1 + e]);
      p.grad_loss = grad_loss.data();
      p.D_in = D.data();
    } else {
      for (int64_t e = 0; e < S * S; ++e) grad_D[e] = static_cast<R>(in[n + e]);
      p.grad_D = grad_D.data();
    }
    p.grad_x = grad_x.data();
    p.lse = ws.data();
    p.Gs = p.lse + S * N;
    p.a = p.Gs + S * S;
    p.q = p.a + S;
    run_grid(warp_rows_grid(S * N), kThreads, 0, [&](const HostCtx& c, unsigned char*) { row_stats_block(c, p); });
    run_grid(warp_rows_grid(S), kThreads, 0, [&](const HostCtx& c, unsigned char*) {
      if (isib) {
        prepare_block<true>(c, p);
      } else {
        prepare_block<false>(c, p);
      }
    });
    run_grid(ceil_div(S, kTile) * ceil_div(p.K, kTile), kThreads, gemm_smem<R>(),
             [&](const HostCtx& c, unsigned char* s) { gemm_tiles_block(c, p, s); });
    run_grid(warp_rows_grid(S * N), kThreads, 0, [&](const HostCtx& c, unsigned char*) { row_backward_block(c, p); });
    for (auto v : grad_x) result.push_back(detail::to_op(v));
  }
  write_doubles(argv[9], result);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 10) return 2;
  const std::string dt = argv[2];
  if (dt == "f32") return run<float>(argv);
  if (dt == "f64") return run<double>(argv);
  if (dt == "f16") return run<__half>(argv);
  return run<__nv_bfloat16>(argv);
}
"""


@pytest.fixture(scope="module")
def emulators(tmp_path_factory):
    """Paths of the value-loss and ISIB emulators (built in parallel)."""
    build = tmp_path_factory.mktemp("emulator")
    (build / "host_ctx.h").write_text(HOST_CTX)
    flags = [
        "-std=c++20", "-O1", "-DDDTIME_KERNELS_HOST_EMULATION", f"-I{CUDA_SRC}", f"-I{build}",
        "-gencode=arch=compute_90,code=sm_90", "-diag-suppress", "20011,20014",
    ]
    procs = {}
    for name, src in (("value", VALUE_EMU), ("isib", ISIB_EMU)):
        (build / f"{name}_emu.cu").write_text(src)
        procs[name] = _start([NVCC, *flags, f"{name}_emu.cu", "-o", f"{name}_emu"], build)
    for name, proc in procs.items():
        rc, out = _finish(proc)
        assert rc == 0, f"building the {name} emulator failed:\n{out}"
    return {name: build / f"{name}_emu" for name in procs}


def _emulate(exe, args, arrays, tmp_path):
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    np.concatenate([np.ravel(a) for a in arrays]).astype(np.float64).tofile(src)
    proc = subprocess.run([str(exe), *map(str, args), src, dst], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return np.fromfile(dst, dtype=np.float64)


def _rel(a, b):
    scale = np.abs(b).max()
    return np.abs(a - b).max() / (scale if scale > 0 else 1.0)


TORCH_DTYPE = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32, "f64": torch.float64}
# max |error| / max |reference| of opmath results and of results stored in the input dtype
TOLERANCE = {"f64": (1e-12, 1e-12), "f32": (2e-6, 2e-6), "f16": (2e-6, 2e-3), "bf16": (2e-6, 1e-2)}


def _rounded(a, dtype):
    """a as the kernel sees it: rounded to the input dtype, as float64."""
    return torch.from_numpy(a).to(TORCH_DTYPE[dtype]).double().numpy()


def _value_reference(x, y, alpha):
    xt = torch.from_numpy(x).requires_grad_(True)
    d = xt - torch.from_numpy(y)
    spec = torch.fft.rfft(d, dim=1)
    rows = alpha * spec.abs().mean(1) + (1 - alpha) * d.square().mean(1)
    (grad,) = torch.autograd.grad(rows.sum(), xt)
    return rows.detach().numpy(), grad.numpy(), spec.detach().numpy()


# outer, H, inner, time-contiguous storage, series per block, threads, block cap
VALUE_CASES = [
    (3, 96, 1, 0, 2, 64, 100),  # radix 8 * 4 * ... on a [.., H] layout
    (2, 24, 5, 0, 4, 64, 2),  # [B, H, N]: time-major loads; 3 tiles on 2 blocks
    (2, 24, 5, 1, 3, 96, 100),  # [B, N, H] storage with inner > 1
    (4, 1, 1, 0, 2, 64, 100),  # H = 1
    (3, 2, 2, 0, 2, 64, 100),  # H = 2: no FFT stage
    (2, 7, 3, 0, 2, 64, 100),  # odd H, radix 7
    (2, 336, 1, 0, 2, 128, 100),  # M = 168 = 8 * 3 * 7
    (1, 720, 2, 0, 2, 256, 100),  # M = 360 = 8 * 3 * 3 * 5
    (2, 45, 1, 0, 2, 64, 100),  # odd, 3 * 3 * 5
    (2, 338, 1, 0, 1, 64, 100),  # M = 169 = 13 * 13: generic prime stages
    (2, 143, 1, 1, 2, 32, 100),  # odd, 11 * 13, one warp
]


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("case", VALUE_CASES, ids=lambda c: "x".join(map(str, c[:3])))
def test_emulated_value_kernels(emulators, tmp_path, case, dtype):
    _check_value_case(emulators["value"], tmp_path, case, dtype, seed=sum(case))


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_emulated_value_kernels_half(emulators, tmp_path, dtype):
    _check_value_case(emulators["value"], tmp_path, (3, 48, 2, 0, 4, 64, 100), dtype, seed=7)


def _check_value_case(exe, tmp_path, case, dtype, seed):
    outer, H, inner, time_contig, tile, threads, grid = case
    rng = np.random.default_rng(seed)
    x = _rounded(rng.standard_normal((outer, H, inner)), dtype)
    y = _rounded(rng.standard_normal((outer, H, inner)), dtype)
    if outer * inner > 1:
        y[0, :, 0] = x[0, :, 0]  # one all-zero series: every bin takes the zero subgradient
    alpha = 0.7
    rows, grad, spec = _value_reference(x, y, alpha)
    tol_op, tol_io = TOLERANCE[dtype]
    args = [dtype, outer, H, inner, time_contig, alpha, tile, threads, grid]
    out = _emulate(exe, ["value", *args], [x, y], tmp_path)
    nser = outer * inner
    assert _rel(out[:nser], rows.ravel()) < tol_op
    assert _rel(out[nser:], grad.ravel()) < tol_io
    if outer * inner > 1:
        assert np.all(out[nser:].reshape(outer, H, inner)[0, :, 0] == 0)
    no_grad = _emulate(exe, ["value_nograd", *args], [x, y], tmp_path)
    np.testing.assert_array_equal(no_grad, out[:nser])

    F = H // 2 + 1
    bins = _emulate(exe, ["bins", *args], [x, y], tmp_path)
    modulus, phase = bins[: outer * F * inner].reshape(outer, F, inner), bins[outer * F * inner :].reshape(outer, F, inner, 2)
    assert _rel(modulus, np.abs(spec)) < tol_io
    mag = np.abs(spec)
    unit = np.where(mag > 0, spec / np.where(mag > 0, mag, 1), 0)
    strong = mag > 1e-3 * mag.max()  # the phase of a nearly zero bin is ill-conditioned
    assert np.abs(phase[..., 0] - unit.real)[strong].max() < 1e3 * tol_op + 1e-12
    assert np.abs(phase[..., 1] - unit.imag)[strong].max() < 1e3 * tol_op + 1e-12
    if outer * inner > 1:
        assert np.all(phase[0, :, 0] == 0)

    grad_modulus = _rounded(rng.standard_normal((outer, F, inner)), dtype)
    unit_pair = np.stack([unit.real, unit.imag], -1)
    back = _emulate(exe, ["bins_bwd", *args[:4], 0, *args[5:]], [grad_modulus, unit_pair], tmp_path)
    t, k = np.arange(H)[:, None], np.arange(F)[None, :]
    expected = np.einsum("tk,okn->otn", np.exp(2j * np.pi * k * t / H), grad_modulus * unit).real
    assert _rel(back, expected.ravel()) < tol_io


def _isib_reference(x, tau):
    xt = torch.from_numpy(x).requires_grad_(True)
    s, n, _ = xt.shape
    logp = torch.log_softmax(xt / tau, -1).reshape(s, -1)
    p = logp.exp()
    cross = p @ logp.T
    h = (p * logp).sum(1)
    d = (h[:, None] + h[None, :] - cross - cross.T) / n
    d = d * (1 - torch.eye(s, dtype=d.dtype))
    i, j = torch.triu_indices(s, s, 1)
    loss = torch.exp(-d[i, j]).mean() if s > 1 else xt.sum() * 0
    return xt, d, loss


# S, N, L, tau, SM count (sets the K split)
ISIB_CASES = [
    (1, 3, 5, 1.0, 4),
    (2, 1, 1, 1.0, 4),
    (5, 3, 7, 0.7, 132),
    (10, 7, 24, 1.0, 132),  # 6 to 11 splits of the N*L axis
    (70, 2, 40, 2.0, 8),  # two sample tiles: off-diagonal tile, transposed finalize
    (33, 5, 50, 1.0, 1),  # several chunks per split
]


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("case", ISIB_CASES, ids=lambda c: "x".join(map(str, c[:3])))
def test_emulated_isib_kernels(emulators, tmp_path, case, dtype):
    _check_isib_case(emulators["isib"], tmp_path, case, dtype, seed=sum(case[:3]))


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_emulated_isib_kernels_half(emulators, tmp_path, dtype):
    _check_isib_case(emulators["isib"], tmp_path, (6, 3, 20, 1.0, 132), dtype, seed=3)


def _check_isib_case(exe, tmp_path, case, dtype, seed):
    S, N, L, tau, sms = case
    rng = np.random.default_rng(seed)
    x = _rounded(2.0 * rng.standard_normal((S, N, L)), dtype)
    xt, d, loss = _isib_reference(x, tau)
    tol_op, tol_io = TOLERANCE[dtype]
    args = [dtype, S, N, L, tau, sms]
    out = _emulate(exe, ["fwd", *args], [x], tmp_path)
    D = out[: S * S].reshape(S, S)
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert _rel(D, d.detach().numpy()) < 5 * tol_op
    assert abs(out[-1] - loss.item()) <= 5 * tol_op * max(abs(loss.item()), 1e-300)

    grad_D = rng.standard_normal((S, S))
    (expected,) = torch.autograd.grad((d * torch.from_numpy(grad_D)).sum(), xt, retain_graph=True)
    got = _emulate(exe, ["bwd_pair", *args], [x, grad_D], tmp_path)
    assert _rel(got, expected.numpy().ravel()) < 5 * tol_io

    grad_loss = 1.7
    expected = torch.autograd.grad(loss * grad_loss, xt)[0] if S > 1 else torch.zeros_like(xt)
    got = _emulate(exe, ["bwd_isib", *args], [x, [grad_loss], d.detach().numpy()], tmp_path)
    if S == 1:
        assert np.all(got == 0)
    else:
        assert _rel(got, expected.numpy().ravel()) < 5 * tol_io
