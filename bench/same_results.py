"""Compare two trees written by ``bench/same_results.sh``: every number of every results.json,
history.json and evaluate.json (timings and paths aside) and every synthetic set, exactly.

    python bench/same_results.py OUT_BEFORE OUT_AFTER      # exit status 1 on any difference
"""
import json
import pathlib
import sys

from safetensors.torch import load_file

IGNORED = {"seconds", "expert_seconds", "total_seconds", "distill_seconds", "select_seconds", "evaluate_seconds"}


def _read(path: pathlib.Path):
    record = json.loads(path.read_text())
    if path.name == "evaluate.json":
        record.pop("synthetic")  # the set's path
    return record


def differences(x, y, where: str) -> list[str]:
    if isinstance(x, dict) and isinstance(y, dict):
        found = []
        for k in sorted((set(x) | set(y)) - IGNORED):
            found += ([f"{where}.{k}: only in one"] if k not in x or k not in y else
                      differences(x[k], y[k], f"{where}.{k}"))
        return found
    if isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            return [f"{where}: lengths {len(x)} and {len(y)}"]
        return [d for i, (u, v) in enumerate(zip(x, y)) for d in differences(u, v, f"{where}[{i}]")]
    return [] if x == y else [f"{where}: {x!r} != {y!r}"]


def main(before: pathlib.Path, after: pathlib.Path) -> int:
    found, checked = [], 0
    for path in sorted([*before.rglob("results.json"), *before.rglob("history.json"), *before.glob("evaluate.json")]):
        other = after / path.relative_to(before)
        checked += 1
        found += ([f"{other}: missing"] if not other.exists() else
                  differences(_read(path), _read(other), str(path.relative_to(before))))
    for path in sorted(before.rglob("synthetic.safetensors")):
        other = after / path.relative_to(before)
        checked += 1
        x, y = load_file(path)["windows"], load_file(other)["windows"] if other.exists() else None
        if y is None or x.shape != y.shape or not bool((x == y).all()):
            found.append(f"{path.relative_to(before)}: synthetic sets differ")
    print("\n".join(found[:50]))
    print(f"{checked} files compared, {len(found)} differences")
    return 1 if found or not checked else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])))
