"""DDTime's terms in a distillation iteration on a GPU: their overhead, and the host waits per update.

    python bench/bench_gpu_distill.py --experts DIR --out PREFIX [--setting condtsf] [--rounds 200]

One MTT iteration (``bench_overhead.py``'s settings: CondTSF's preset on ETTh1, or the standard
96 -> 96 set) in three variants (base, + DDTime with the fused ops, + DDTime with the plain-PyTorch
reference), on ``--device`` (default cuda):

* **time per iteration**: the variants interleaved round by round, each iteration bracketed by
  ``torch.cuda.synchronize()``; medians, and overhead = (t_variant - t_base) / t_base;
* **throughput**: ``--block`` iterations back to back with one synchronisation at the end (ms per
  iteration): equal to the bracketed time when the host never waits inside an iteration;
* **host waits**: the iterations run under ``torch.cuda.set_sync_debug_mode("warn")`` (every
  synchronising call warns: ``.item()``, ``float()``, ``bool()`` of a device tensor, a copy to the
  host), and under the profiler, which counts the CUDA runtime's synchronising calls
  (``cudaStreamSynchronize``, ``cudaDeviceSynchronize``, ``cudaEventSynchronize``, and the blocking
  ``cudaMemcpy``) per iteration.

Writes PREFIX.json and PREFIX.md.
"""
from __future__ import annotations

import argparse
import collections
import json
import pathlib
import platform
import statistics
import sys
import time
import warnings

REPO = pathlib.Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

import ddtime  # noqa: E402
from bench_overhead import SETTINGS, load_setting, make_runs  # noqa: E402
from ddtime.driver.distill import DistillRun  # noqa: E402

SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bracketed(runs: dict[str, DistillRun], rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Milliseconds of each iteration, synchronised before and after, the variants interleaved."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            synchronize(device)
            t0 = time.perf_counter()
            run.iteration(10 + r)
            synchronize(device)
            times[name].append(1e3 * (time.perf_counter() - t0))
    return times


def back_to_back(runs: dict[str, DistillRun], block: int, device: torch.device) -> dict[str, float]:
    """Milliseconds per iteration over ``block`` iterations with one synchronisation at the end."""
    out = {}
    for name, run in runs.items():
        synchronize(device)
        t0 = time.perf_counter()
        for i in range(block):
            run.iteration(10_000 + i)
        synchronize(device)
        out[name] = 1e3 * (time.perf_counter() - t0) / block
    return out


def host_waits(runs: dict[str, DistillRun], iterations: int, device: torch.device) -> dict[str, dict]:
    """Per variant: the sync-debug warnings and the profiler's synchronising runtime calls per iteration."""
    out = {}
    for name, run in runs.items():
        run.flush_history()
        synchronize(device)
        record: dict = {"iterations": iterations}
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for i in range(iterations):
                    run.iteration(20_000 + i)
            torch.cuda.set_sync_debug_mode("default")
            messages = collections.Counter(str(w.message).splitlines()[0][:160] for w in caught)
            record["sync_debug_warnings"] = sum(messages.values())
            record["sync_debug_messages"] = dict(messages)
            activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            with torch.profiler.profile(activities=activities) as prof:
                for i in range(iterations):
                    run.iteration(30_000 + i)
                synchronize(device)
            counts = collections.Counter()
            for event in prof.events():
                if event.name in SYNC_CALLS:
                    counts[event.name] += 1
            record["runtime_sync_calls"] = dict(counts)
        run.flush_history()
        out[name] = record
    return out


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "ddtime": ddtime.__version__, "python": platform.python_version(),
           "device": str(device)}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), torch_cuda=torch.version.cuda)
    return env


def markdown(result: dict) -> str:
    env, med = result["environment"], result["median_ms"]
    base = med["base"]
    lines = [f"# DDTime's terms on {env.get('gpu', env['device'])}: one MTT iteration, setting `{result['setting']}`",
             "", f"Command: `{result['command']}`", "",
             f"torch {env['torch']} (CUDA {env.get('torch_cuda')}), ddtime {env['ddtime']}; {result['data']}; "
             f"{result['rounds']} interleaved rounds (each iteration synchronised before and after), "
             f"{result['block']} iterations back to back for the throughput.", "",
             "| variant | ms / iteration (median) | overhead vs base | ms / iteration back to back | "
             "sync-debug warnings / iteration | synchronising runtime calls / iteration |",
             "|---|---|---|---|---|---|"]
    for name in med:
        waits = result["host_waits"][name]
        calls = sum(waits.get("runtime_sync_calls", {}).values())
        over = "-" if name == "base" else f"{100 * (med[name] - base) / base:+.2f}%"
        lines.append(f"| {name} | {med[name]:.3f} | {over} | {result['back_to_back_ms'][name]:.3f} | "
                     f"{waits.get('sync_debug_warnings', 0) / waits['iterations']:.2f} | "
                     f"{calls / waits['iterations']:.2f} |")
    lines += ["", "Synchronising calls seen (all variants):", ""]
    for name, waits in result["host_waits"].items():
        lines.append(f"- {name}: runtime {waits.get('runtime_sync_calls', {})}; "
                     f"sync-debug {waits.get('sync_debug_messages', {})}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experts", required=True, help="expert directory (trained there when missing)")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="condtsf")
    parser.add_argument("--method", default="mtt", choices=("mtt", "datm", "ftd"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--sync-iterations", type=int, default=10)
    parser.add_argument("--out", required=True, help="output path without extension (.json and .md)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    command = "python bench/bench_gpu_distill.py " + " ".join(sys.argv[1:] if argv is None else argv)
    data, experts, options = load_setting(args.experts, args.setting, quiet=False)
    runs = make_runs(data, experts, options, args.method, device=args.device)
    for run in runs.values():  # two more warm-up iterations: the device's allocator and kernels
        run.iteration(1)
        run.iteration(2)
    times = bracketed(runs, args.rounds, device)
    result = {"command": command, "setting": args.setting, "method": args.method, "rounds": args.rounds,
              "block": args.block, "environment": environment(device),
              "data": f"{data.name}, S = {options['samples']}, {experts.num_experts} experts x "
                      f"{experts.settings['expert_epochs']} epochs",
              "median_ms": {k: statistics.median(v) for k, v in times.items()},
              "min_ms": {k: min(v) for k, v in times.items()},
              "back_to_back_ms": back_to_back(runs, args.block, device),
              "host_waits": host_waits(runs, args.sync_iterations, device)}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
