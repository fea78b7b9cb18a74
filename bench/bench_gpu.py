"""CUDA-event benchmark of the fused losses against the eager and the compiled references.

    python bench/bench_gpu.py --out bench/results/gpu_20250101 [--dtypes float32,bfloat16] [--quick]

Writes <out>.json (every measurement, the device and the versions) and <out>.md (tables).
Per case and pass (forward; forward + backward w.r.t. the prediction / the synthetic set):
  * time: CUDA events around `iters` back-to-back calls (iters sized to >= 50 ms), 5 repeats,
    median and minimum per call;
  * achieved bandwidth: the minimal traffic (inputs read once, plus the gradient written once for
    forward + backward) over the median time, also as a share of the measured device copy
    bandwidth (copy_ of a 1 GiB tensor: read + write);
  * peak memory: torch.cuda.max_memory_allocated during one call, minus what was allocated before.
Value loss runs [B, N, H] (dim=-1) for all implementations and [B, H, N] (dim=1) for the fused op
and the eager reference; ISIB runs x = [S, 7, 192], also against ``cublas``: the matrix products
the op is built on (``P @ logP.T`` forward; with backward also ``G @ logP`` and ``G.T @ P``) done by
cuBLAS in float32 on precomputed (S, N*L) operands, the floor a product-based kernel can reach.
The JSON is rewritten after every case, so a run stopped by ``--budget-s`` or a timeout keeps
what it measured.
"""
import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import ddtime
from ddtime import _ops
from ddtime.reference import isib_loss_reference, value_loss_reference

VALUE_SHAPES = [(256, 7, 96), (64, 321, 336), (32, 862, 720), (1024, 862, 720)]
ISIB_SAMPLES = [10, 100, 1000, 4096, 16384]
ISIB_CHANNELS, ISIB_LENGTH = 7, 192
QUICK_VALUE_SHAPES = [(10, 7, 96), (64, 321, 336)]
QUICK_ISIB_SAMPLES = [10, 1000]


def cuda_time(fn, min_ms=50.0, repeats=5, warmup=3):
    """Median / minimum milliseconds per call of fn, by CUDA events."""
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    fn()
    end.record()
    end.synchronize()
    iters = int(max(1, min(2000, min_ms / max(start.elapsed_time(end), 1e-3))))
    times = []
    for _ in range(repeats):
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / iters)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "iters": iters, "repeats": repeats}


def peak_extra_bytes(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def copy_bandwidth_gbps():
    src = torch.empty(1 << 28, device="cuda")  # 1 GiB float32
    dst = torch.empty_like(src)
    t = cuda_time(lambda: dst.copy_(src), min_ms=200.0)
    return 2 * src.nbytes / (t["median_ms"] * 1e-3) / 1e9


def environment(copy_gbps):
    props = torch.cuda.get_device_properties(0)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0),
        "capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "ddtime": ddtime.__version__,
        "ddtime_cuda_version": _ops.cuda_version(),
        "python": platform.python_version(),
        "copy_bandwidth_gbps": copy_gbps,
    }


def measure(record, make_call, min_bytes, copy_gbps):
    """Times make_call() and fills record; errors (e.g. a failing compile) are recorded, not raised."""
    try:
        call = make_call()
        timing = cuda_time(call)
        record.update(timing)
        record["peak_extra_bytes"] = peak_extra_bytes(call)
        record["achieved_gbps"] = min_bytes / (timing["median_ms"] * 1e-3) / 1e9
        record["share_of_copy_bandwidth"] = record["achieved_gbps"] / copy_gbps
    except Exception as exc:  # noqa: BLE001 - the report keeps going and names the failure
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        torch.cuda.empty_cache()
    return record


def value_cases(shapes, dtype, compiled, copy_gbps, log):
    """Times every value-loss case; ``log(record)`` receives each as it finishes."""
    for shape in shapes:
        for layout, dim in (("BNH", -1), ("BHN", 1)):
            size = shape if layout == "BNH" else (shape[0], shape[2], shape[1])
            gen = torch.Generator(device="cuda").manual_seed(0)
            x = torch.randn(size, device="cuda", generator=gen).to(dtype)
            y = torch.randn(size, device="cuda", generator=gen).to(dtype)
            impls = {"fused": ddtime.value_loss, "eager": value_loss_reference}
            if layout == "BNH" and compiled is not None:
                impls["compile"] = compiled
            for impl, fn in impls.items():
                for pass_ in ("forward", "forward+backward"):
                    rec = {"loss": "value", "shape": list(size), "layout": layout, "dtype": str(dtype),
                           "impl": impl, "pass": pass_}
                    nbytes = 2 * x.nbytes + (x.nbytes if pass_ != "forward" else 0)

                    def make(fn=fn, pass_=pass_, x=x, y=y, dim=dim):
                        if pass_ == "forward":
                            return lambda: fn(x, y, dim=dim)
                        xr = x.detach().requires_grad_(True)
                        return lambda: torch.autograd.grad(fn(xr, y, dim=dim), xr)

                    measure(rec, make, nbytes, copy_gbps)
                    log(rec)
            del x, y
            torch.cuda.empty_cache()


def isib_cases(samples, dtype, compiled, copy_gbps, log):
    """Times every ISIB case; ``log(record)`` receives each as it finishes."""
    for s in samples:
        gen = torch.Generator(device="cuda").manual_seed(1)
        x = torch.randn(s, ISIB_CHANNELS, ISIB_LENGTH, device="cuda", generator=gen).to(dtype)
        impls = {"fused": ddtime.isib_loss, "eager": isib_loss_reference}
        if compiled is not None:
            impls["compile"] = compiled
        impls["cublas"] = None
        for impl, fn in impls.items():
            for pass_ in ("forward", "forward+backward"):
                rec = {"loss": "isib", "shape": list(x.shape), "layout": "SNL", "dtype": str(dtype), "impl": impl,
                       "pass": pass_}
                nbytes = x.nbytes * (1 if pass_ == "forward" else 2)

                def make(fn=fn, pass_=pass_, x=x, impl=impl):
                    if impl == "cublas":
                        return cublas_products(x, pass_)
                    if pass_ == "forward":
                        return lambda: fn(x)
                    xr = x.detach().requires_grad_(True)
                    return lambda: torch.autograd.grad(fn(xr), xr)

                measure(rec, make, nbytes, copy_gbps)
                log(rec)
        del x
        torch.cuda.empty_cache()


def cublas_products(x, pass_):
    """The GEMMs ISIB is built on, by cuBLAS in float32 on (S, N*L) operands computed beforehand:
    ``P @ logP.T`` (forward), plus ``G @ logP`` and ``G.T @ P`` for an (S, S) gradient G."""
    logp = torch.log_softmax(x.float(), dim=-1).reshape(x.shape[0], -1).contiguous()
    p = logp.exp()
    g = torch.randn(x.shape[0], x.shape[0], device=x.device)
    if pass_ == "forward":
        return lambda: p @ logp.T
    return lambda: (p @ logp.T, g @ logp, g.T @ p)


def _ms(rec):
    return rec.get("median_ms") if rec and "error" not in rec else None


def markdown(env, results):
    lines = [
        f"# ddtime GPU benchmark, {env['date']}",
        "",
        f"Command: `{env.get('command', 'python bench/bench_gpu.py')}`",
        "",
        f"{env['gpu']} (sm_{env['capability'].replace('.', '')}, {env['sm_count']} SMs, {env['memory_gib']} GiB), "
        f"torch {env['torch']} (CUDA {env['torch_cuda']}), ddtime {env['ddtime']} built with CUDA "
        f"{env['ddtime_cuda_version']}, Python {env['python']}.",
        f"Device copy bandwidth (copy_ of 1 GiB, read + write): {env['copy_bandwidth_gbps']:.0f} GB/s.",
        "",
        "Median milliseconds per call (CUDA events). Speed-up = reference time / fused time; fused / cuBLAS = "
        "the fused op's time over cuBLAS doing ISIB's products alone (lower is better). Achieved bandwidth "
        "counts the inputs read once (plus the gradient written once with backward); peak = extra memory "
        "allocated during one call.",
        "",
        "| loss | shape | layout | dtype | pass | fused ms | eager ms | compile ms | cuBLAS ms | vs eager | vs compile "
        "| fused / cuBLAS | fused GB/s | % of copy BW | fused peak MiB | eager peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if env.get("stopped"):
        lines[2:2] = [f"Stopped early: {env['stopped']}.", ""]

    def key_of(r):
        return r["loss"], tuple(r["shape"]), r["layout"], r["dtype"].replace("torch.", ""), r["pass"]

    keys = []
    for r in results:
        if key_of(r) not in keys:
            keys.append(key_of(r))
    for key in keys:
        group = {r["impl"]: r for r in results if key_of(r) == key}
        fused = group.get("fused")
        f_ms, e_ms, c_ms, b_ms = (_ms(group.get(i)) for i in ("fused", "eager", "compile", "cublas"))

        def cell(v, fmt="{:.3f}"):
            return fmt.format(v) if v is not None else "-"

        def ratio(a, b, fmt="{:.1f}x"):
            return cell(a / b if a and b else None, fmt)

        def peak(rec):
            return cell(rec["peak_extra_bytes"] / 2**20, "{:.1f}") if rec and "peak_extra_bytes" in rec else "-"

        share = 100 * fused["share_of_copy_bandwidth"] if fused and "share_of_copy_bandwidth" in fused else None
        lines.append(
            f"| {key[0]} | {'x'.join(map(str, key[1]))} | {key[2]} | {key[3]} | {key[4]} | {cell(f_ms)} | "
            f"{cell(e_ms)} | {cell(c_ms)} | {cell(b_ms)} | {ratio(e_ms, f_ms)} | {ratio(c_ms, f_ms)} | "
            f"{ratio(f_ms, b_ms, '{:.2f}')} | {cell(fused.get('achieved_gbps') if fused else None, '{:.0f}')} | "
            f"{cell(share, '{:.0f}%')} | {peak(fused)} | {peak(group.get('eager'))} |"
        )
    errors = [r for r in results if "error" in r]
    if errors:
        lines += ["", "Failures:", ""]
        lines += [f"- {r['loss']} {r['shape']} {r['dtype']} {r['impl']} {r['pass']}: {r['error']}" for r in errors]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output path without extension (.json and .md are written)")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma-separated, run in this order (float16, bfloat16, float32, float64)")
    parser.add_argument("--quick", action="store_true", help="two value shapes and two ISIB sizes only")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile references")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no new case after this many seconds (the cases done are kept)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device")
    if _ops.cuda_version() < 0:
        sys.exit("ddtime._C was built without CUDA kernels: rebuild with DDTIME_WITH_CUDA=1")
    dtypes = [d for d in args.dtypes.split(",") if d]
    bad = [d for d in dtypes if d not in ("float16", "bfloat16", "float32", "float64")]
    if bad:
        parser.error(f"--dtypes: expected float16, bfloat16, float32 or float64, got {', '.join(bad)}")
    torch.backends.cuda.matmul.allow_tf32 = False  # the references keep float32 accuracy
    torch._dynamo.config.cache_size_limit = 256  # one graph per shape and dtype: never fall back to eager

    json_path, md_path = Path(args.out + ".json"), Path(args.out + ".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: list[dict] = []

    class OutOfBudget(Exception):
        pass

    def log(rec):
        results.append(rec)
        json_path.write_text(json.dumps({"environment": env, "results": results}, indent=1) + "\n")
        t = f"{rec['median_ms']:.3f} ms" if "median_ms" in rec else rec.get("error", "?")
        print(f"{rec['loss']:5} {'x'.join(map(str, rec['shape'])):>14} {rec['layout']} {rec['dtype']:14} "
              f"{rec['impl']:7} {rec['pass']:16} {t}", flush=True)
        if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
            raise OutOfBudget

    copy_gbps = copy_bandwidth_gbps()
    env = environment(copy_gbps)
    env["command"] = "python bench/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(json.dumps(env), flush=True)
    compiled_value = torch.compile(value_loss_reference) if not args.no_compile else None
    compiled_isib = torch.compile(isib_loss_reference) if not args.no_compile else None
    try:
        for name in dtypes:
            dtype = getattr(torch, name)
            value_cases(QUICK_VALUE_SHAPES if args.quick else VALUE_SHAPES, dtype, compiled_value, copy_gbps, log)
            isib_cases(QUICK_ISIB_SAMPLES if args.quick else ISIB_SAMPLES, dtype, compiled_isib, copy_gbps, log)
    except OutOfBudget:
        env["stopped"] = f"--budget-s {args.budget_s}: the cases after the last one listed were not run"
        print(env["stopped"], flush=True)
    json_path.write_text(json.dumps({"environment": env, "results": results}, indent=1) + "\n")
    md_path.write_text(markdown(env, results))
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
