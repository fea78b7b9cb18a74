"""Expert trajectories for trajectory matching (MTT / FTD / DATM) and snapshot-based methods.

``train_experts`` trains ``num_experts`` models on the full training windows and stores every
expert's parameters after every epoch, the initial ones included (SPEC section 4: DLinear,
40 experts x 80 epochs, SGD lr 5e-4, momentum 0.9, batch 64; FTD: SAM with rho 0.05).
Expert ``i`` uses seed ``seed + i`` for its initialisation and its shuffling order.

Layout of ``out_dir``::

    .lock                     held (flock) by the process training into the directory
    manifest.json             {"format", "settings", "settings_hash", "num_experts", "experts": [...]}
    expert_000.safetensors    "trajectory": float32 [expert_epochs + 1, P] (row 0 = initial parameters),
                              metadata: settings_hash, expert index, seed, test_mse, test_mae
    ...

Every file is written atomically (``*.tmp``, fsync, ``os.replace``), so an expert file is
complete or absent, and the manifest is rewritten after each expert: a killed run resumes at
the next unfinished expert. A settings mismatch (other data, model, optimizer, ...), a
truncated or corrupt file or a wrong shape raises an error naming the file.

Parallel: under ``torchrun`` (``torch.distributed`` initialised), rank r trains the experts
i with ``i % world_size == r``; rank 0 writes the manifest after a final barrier.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import math
import operator
import os
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from tqdm.auto import tqdm

from ddtime._atomic import atomic_write_bytes
from ddtime.models import MODELS, assign_flat_params, build_model, flat_params, param_spec
from ddtime.stacked_training import train_stacked
from ddtime.training import DEFAULT_LR, evaluate

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EXPERT_FILE = re.compile(r"^expert_(\d{3,})\.safetensors$")
EXPERT_OPTIMIZERS = ("sgd", "sam")


def expert_file(i: int) -> str:
    return f"expert_{i:03d}.safetensors"


# ----------------------------------------------------------------------------------------------
# atomic files
def _write_manifest(path: Path, manifest: dict) -> None:
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


# ----------------------------------------------------------------------------------------------
# settings
def data_fingerprint(data) -> str:
    """sha256 (16 hex digits) of the scaled training series and the window lengths."""
    h = hashlib.sha256()
    train = data.train.detach().to("cpu", torch.float32).contiguous()
    h.update(repr((tuple(train.shape), data.protocol, data.seq_len, data.pred_len)).encode())
    h.update(train.numpy().tobytes())
    return h.hexdigest()[:16]


def expert_settings(
    data,
    *,
    model: str,
    model_kwargs: dict | None,
    expert_epochs: int,
    optimizer: str,
    lr: float,
    momentum: float,
    batch_size: int,
    rho: float,
    seed: int,
) -> dict:
    """Everything that determines an expert's trajectory, as stored in the manifest."""
    net = build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.n_channels,
                      **(model_kwargs or {}))
    spec = param_spec(net)
    return {
        "dataset": data.name,
        "protocol": data.protocol,
        "seq_len": data.seq_len,
        "pred_len": data.pred_len,
        "stride": data.stride,
        "channels": data.n_channels,
        "data_fingerprint": data_fingerprint(data),
        "model": model.lower(),
        "model_kwargs": dict(sorted((model_kwargs or {}).items())),
        "expert_epochs": expert_epochs,
        "optimizer": optimizer,
        "lr": float(lr),
        "momentum": float(momentum),
        "batch_size": batch_size,
        "rho": float(rho) if optimizer == "sam" else None,
        "seed": seed,
        "param_spec": [[name, list(shape)] for name, shape in spec],
        "num_params": sum(math.prod(shape) for _, shape in spec),
    }


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# reading and validating
def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no expert manifest here (train experts into this directory first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: expert manifest is not readable JSON ({exc})") from None
    required = {"format", "settings", "settings_hash", "num_experts", "experts"}
    if not isinstance(manifest, dict) or not required <= set(manifest):
        have = sorted(manifest) if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: expert manifest must hold the keys {sorted(required)}, got {have}")
    if manifest["format"] != FORMAT_VERSION:
        raise ValueError(f"{path}: expert manifest format {manifest['format']!r}, expected {FORMAT_VERSION}")
    if settings_hash(manifest["settings"]) != manifest["settings_hash"]:
        raise ValueError(f"{path}: settings_hash does not match the stored settings (edited or corrupt manifest)")
    for entry in manifest["experts"]:
        if not isinstance(entry, dict) or not {"index", "file", "test_mse", "test_mae"} <= set(entry):
            raise ValueError(f"{path}: malformed expert entry {entry!r}")
    return manifest


def _read_header(path: Path, settings: dict, digest: str, index: int) -> dict:
    """Validate an expert file's header (size, shape, dtype, settings) and return its metadata."""
    expected = [settings["expert_epochs"] + 1, settings["num_params"]]
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            if keys != ["trajectory"]:
                raise ValueError(f"{path}: expected one tensor 'trajectory', got {keys}")
            shape = list(f.get_slice("trajectory").get_shape())
            dtype = f.get_slice("trajectory").get_dtype()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: expert file is missing") from None
    except ValueError:
        raise
    except Exception as exc:  # safetensors raises its own error type for truncated / corrupt files
        raise ValueError(f"{path}: truncated or corrupt expert file ({exc})") from None
    if shape != expected or dtype not in ("F32", "float32"):
        raise ValueError(f"{path}: trajectory has shape {shape} / dtype {dtype}, expected {expected} float32 "
                         f"(expert_epochs + 1, num_params)")
    if meta.get("settings_hash") != digest or meta.get("expert") != str(index):
        raise ValueError(f"{path}: file belongs to another run (settings_hash {meta.get('settings_hash')!r}, "
                         f"expert {meta.get('expert')!r}; expected {digest!r}, expert {index})")
    return meta


def _entry_from_meta(path: Path, index: int, meta: dict) -> dict:
    try:
        entry = {"index": index, "file": expert_file(index), "seed": int(meta["seed"]),
                 "test_mse": float(meta["test_mse"]), "test_mae": float(meta["test_mae"]),
                 "train_loss": float(meta["train_loss"])}
        if "teacher_epoch" in meta:
            entry.update(teacher_epoch=int(meta["teacher_epoch"]), teacher_test_mse=float(meta["teacher_test_mse"]))
        return entry
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: metadata lacks a valid {exc}") from None


def _scan_experts(out_dir: Path, settings: dict, digest: str) -> dict[int, dict]:
    """{index: manifest entry} for every expert file in ``out_dir`` (each validated)."""
    found = {}
    for path in sorted(out_dir.iterdir()):
        match = EXPERT_FILE.match(path.name)
        if match:
            index = int(match.group(1))
            found[index] = _entry_from_meta(path, index, _read_header(path, settings, digest, index))
    return found


class ExpertStore:
    """Read access to a directory written by :func:`train_experts`.

    ``num_experts`` counts the stored (complete) experts; ``trajectory(i)`` with
    ``0 <= i < num_experts`` returns the i-th of them (``indices[i]`` is its expert index; the
    two agree once a run is complete). Recently read trajectories are cached (``cache_size``).
    """

    def __init__(self, out_dir, *, cache_size: int = 4):
        self.out_dir = Path(out_dir)
        self.manifest_path = self.out_dir / MANIFEST
        self.manifest = _read_manifest(self.manifest_path)
        self.settings = self.manifest["settings"]
        self._digest = self.manifest["settings_hash"]
        self.entries = sorted(self.manifest["experts"], key=lambda e: e["index"])
        self.indices = [e["index"] for e in self.entries]
        for entry in self.entries:
            _read_header(self.out_dir / entry["file"], self.settings, self._digest, entry["index"])
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    @property
    def num_experts(self) -> int:
        return len(self.entries)

    @property
    def complete(self) -> bool:
        """Whether all ``manifest["num_experts"]`` experts of the run are stored."""
        return set(range(self.manifest["num_experts"])) <= set(self.indices)

    def trajectory(self, i: int) -> torch.Tensor:
        """[expert_epochs + 1, P] float32 (CPU), row 0 = initial parameters."""
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"i must be an int, got {type(i).__name__}") from None
        if not 0 <= i < self.num_experts:
            raise IndexError(f"i must be in [0, {self.num_experts}), got {i}")
        if i not in self._cache:
            entry = self.entries[i]
            path = self.out_dir / entry["file"]
            _read_header(path, self.settings, self._digest, entry["index"])
            try:
                with safe_open(str(path), framework="pt") as f:
                    tensor = f.get_tensor("trajectory")
            except Exception as exc:
                raise ValueError(f"{path}: truncated or corrupt expert file ({exc})") from None
            self._cache[i] = tensor
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(i)
        return self._cache[i].clone()

    def teacher_epoch(self, i: int) -> int:
        """The teacher checkpoint of the i-th stored expert: its best epoch on validation (the last
        where the data has no validation split, or for experts stored before this was recorded)."""
        return int(self.entries[i].get("teacher_epoch", self.settings["expert_epochs"]))

    def teacher_test_mse(self) -> float:
        """Mean test MSE of the experts' teacher checkpoints."""
        return sum(e.get("teacher_test_mse", e["test_mse"]) for e in self.entries) / len(self.entries)

    def build_expert(self, i: int, *, epoch: int = -1, device="cpu") -> torch.nn.Module:
        """The model of the i-th stored expert with its parameters after ``epoch`` (-1 = last)."""
        s = self.settings
        net = build_model(s["model"], seq_len=s["seq_len"], pred_len=s["pred_len"], channels=s["channels"],
                          **s["model_kwargs"])
        return assign_flat_params(net, self.trajectory(i)[epoch]).to(device)

    def matches(self, **settings) -> bool:
        """True when every given setting equals the manifest's (``num_experts``: at least that many stored)."""
        known = set(self.settings) | {"num_experts"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown expert setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for key, value in settings.items():
            if key == "num_experts":
                if self.num_experts < value:
                    return False
            elif key == "model" and isinstance(value, str):
                if value.lower() != self.settings["model"]:
                    return False
            elif self.settings[key] != value:
                return False
        return True

    def __repr__(self) -> str:
        return (f"ExpertStore({str(self.out_dir)!r}, model={self.settings['model']!r}, "
                f"experts={self.num_experts}/{self.manifest['num_experts']}, epochs={self.settings['expert_epochs']})")


# ----------------------------------------------------------------------------------------------
# training
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextlib.contextmanager
def _exclusive(out_dir: Path, *, enabled: bool = True):
    """Hold ``out_dir/.lock`` (an exclusive ``flock``) while training, so that two processes cannot
    write experts into one directory; the second is refused at once. The ranks of one torchrun
    job share the directory by design (``enabled=False``)."""
    if not enabled:
        yield
        return
    with open(out_dir / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExpertDirectoryBusy(f"{out_dir}: another process is training experts into this directory "
                                      "(its .lock is held); wait for it to finish or choose another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ExpertDirectoryBusy(RuntimeError):
    """Another process holds the expert directory's lock."""


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def train_experts(
    data,
    *,
    model: str = "dlinear",
    num_experts: int = 40,
    expert_epochs: int = 80,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.9,
    batch_size: int = 64,
    rho: float = 0.05,
    model_kwargs: dict | None = None,
    out_dir,
    device="cpu",
    seed: int = 0,
    quiet: bool = False,
    on_expert_end=None,
    group_size: int = 20,
) -> ExpertStore:
    """Train (or resume) ``num_experts`` experts of ``model`` on ``data`` into ``out_dir``.

    Experts are trained on ``data.windows("train")`` for exactly ``expert_epochs`` epochs at a
    constant learning rate (no early stopping); test MSE/MAE of the final parameters go to the
    manifest. Already stored experts of the same settings are kept; a manifest with other
    settings raises ``ValueError``. ``on_expert_end(i, entry)`` runs after expert ``i`` is
    stored. Under an initialised ``torch.distributed`` group the experts are split by rank.
    ``group_size`` experts are trained at once, in lockstep (:func:`ddtime.stacked_training.train_stacked`:
    the same batches and steps as one ``train_model`` run each, about 10x faster for small models);
    a killed run loses at most the group in progress.
    """
    if not isinstance(model, str) or model.lower() not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    if optimizer not in EXPERT_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(EXPERT_OPTIMIZERS)} for experts, got {optimizer!r}")
    _check_int("num_experts", num_experts, 1)
    _check_int("expert_epochs", expert_epochs, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    _check_int("group_size", group_size, 1)
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    settings = expert_settings(data, model=model, model_kwargs=model_kwargs, expert_epochs=expert_epochs,
                               optimizer=optimizer, lr=lr, momentum=momentum, batch_size=batch_size, rho=rho,
                               seed=seed)
    digest = settings_hash(settings)
    rank, world = _dist_info()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir, enabled=world == 1):
        manifest_path = out_dir / MANIFEST

        if manifest_path.exists():
            old = _read_manifest(manifest_path)
            if old["settings_hash"] != digest:
                differ = sorted(k for k in set(old["settings"]) | set(settings)
                                if old["settings"].get(k) != settings.get(k))
                raise ValueError(f"{manifest_path}: experts stored here were trained with other settings "
                                 f"(differ in: {', '.join(differ)}); use another out_dir or the same settings")
            num_target = max(num_experts, old["num_experts"])
        else:
            num_target = num_experts
        done = _scan_experts(out_dir, settings, digest)

        def manifest() -> dict:
            return {"format": FORMAT_VERSION, "settings": settings, "settings_hash": digest,
                    "num_experts": num_target, "experts": [done[i] for i in sorted(done)]}

        if world > 1:
            _barrier()  # every rank has read the old manifest before rank 0 rewrites it
        if rank == 0:
            _write_manifest(manifest_path, manifest())

        if world > 1 and str(device).startswith("cuda"):
            device = torch.device("cuda", torch.cuda.current_device())
        todo = [i for i in range(num_experts) if i % world == rank and i not in done]
        desc = "experts" if world == 1 else f"experts (rank {rank})"
        bar = tqdm(total=len(todo) * expert_epochs, desc=f"{desc} (epochs)", disable=quiet)
        test_windows = data.windows("test", stride=1)
        val_windows = data.windows("val", stride=1) if data.val is not None else None
        probe = build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.n_channels,
                            **(model_kwargs or {})).to(device)  # evaluates snapshots
        for first in range(0, len(todo), group_size):
            chunk = todo[first:first + group_size]
            nets = [build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.n_channels,
                                seed=seed + i, **(model_kwargs or {})) for i in chunk]
            snapshots = [[flat_params(net).cpu()] for net in nets]
            val_mse: list[list[float]] = [[] for _ in chunk]

            def record(_epoch, flats, snapshots=snapshots, val_mse=val_mse, n=len(chunk)):
                for trajectory, scores, flat in zip(snapshots, val_mse, flats):
                    trajectory.append(flat)
                    if val_windows is not None:
                        scores.append(evaluate(assign_flat_params(probe, flat), val_windows, seq_len=data.seq_len,
                                               device=device)["mse"])
                bar.update(n)

            losses = train_stacked(nets, data, seeds=[seed + i for i in chunk], optimizer=optimizer, lr=lr,
                                   epochs=expert_epochs, batch_size=batch_size, momentum=momentum, rho=rho,
                                   device=device, on_epoch_end=record)
            for i, net, trajectory, loss, scores in zip(chunk, nets, snapshots, losses, val_mse):
                trajectory = torch.stack(trajectory).float()
                if not torch.isfinite(trajectory).all():
                    raise RuntimeError(f"expert {i} diverged (non-finite parameters); lower lr (got {lr})")
                test = evaluate(net, test_windows, seq_len=data.seq_len, device=device)
                best = 1 + min(range(len(scores)), key=scores.__getitem__) if scores else expert_epochs
                teacher = test if best == expert_epochs else evaluate(assign_flat_params(probe, trajectory[best]),
                                                                      test_windows, seq_len=data.seq_len, device=device)
                entry = {"index": i, "file": expert_file(i), "seed": seed + i, "test_mse": test["mse"],
                         "test_mae": test["mae"], "train_loss": loss[-1], "teacher_epoch": best,
                         "teacher_test_mse": teacher["mse"]}
                meta = {"settings_hash": digest, "expert": str(i), "seed": str(seed + i),
                        "test_mse": repr(entry["test_mse"]), "test_mae": repr(entry["test_mae"]),
                        "train_loss": repr(entry["train_loss"]), "teacher_epoch": str(best),
                        "teacher_test_mse": repr(entry["teacher_test_mse"])}
                payload = safetensors_bytes({"trajectory": trajectory}, metadata=meta)
                atomic_write_bytes(out_dir / entry["file"], payload)
                done[i] = entry
                if world == 1:
                    _write_manifest(manifest_path, manifest())
                if on_expert_end is not None:
                    on_expert_end(i, entry)
        bar.close()

        if world > 1:
            _barrier()
            if rank == 0:
                done = _scan_experts(out_dir, settings, digest)
                _write_manifest(manifest_path, manifest())
            _barrier()
    return ExpertStore(out_dir)


# ----------------------------------------------------------------------------------------------
# command line: ddtime experts ...
def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from ddtime.cli_types import fraction, non_negative_int, positive_float, positive_int
    from ddtime.presets import PRESETS

    parser.description = ("Train expert trajectories (resumable; parallel under torchrun: rank r trains the "
                          "experts i with i mod world_size = r).")

    parser.add_argument("--data", default=None,
                        help="dataset name (e.g. ETTh1) or CSV path; omitted = built-in generated dataset")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="every default of a published setting (condtsf: CondTSF's buffer.py); explicit "
                             "options win")
    parser.add_argument("--protocol", choices=("standard", "condtsf"), default=None, help="default standard")
    parser.add_argument("--seq-len", type=positive_int, default=None,
                        help="look-back (default 96 standard, 24 condtsf)")
    parser.add_argument("--pred-len", type=positive_int, default=None, help="horizon (default 96 standard, 24 condtsf)")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help="step between training windows (default 1 standard, 4 condtsf as CondTSF)")
    parser.add_argument("--model", default="dlinear", choices=sorted(MODELS), type=str.lower)
    parser.add_argument("--num-experts", type=positive_int, default=None, help="default 40")
    parser.add_argument("--expert-epochs", type=positive_int, default=None, help="default 80")
    parser.add_argument("--optimizer", choices=EXPERT_OPTIMIZERS, default="sgd", help="sam for FTD")
    parser.add_argument("--lr", type=positive_float, default=None, help=f"default {DEFAULT_LR['sgd']}")
    parser.add_argument("--momentum", type=fraction, default=0.9)
    parser.add_argument("--rho", type=positive_float, default=0.05, help="SAM radius (--optimizer sam)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--out", required=True, help="output directory (manifest.json + expert_NNN.safetensors)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="under torchrun, cuda means cuda:LOCAL_RANK")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="expert i uses seed + i")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    import ddtime.data
    from ddtime.data.protocols import DEFAULT_LENGTHS, TRAIN_STRIDES
    from ddtime.presets import fill_defaults, preset_defaults

    preset = preset_defaults(args.preset) if args.preset else {}
    chosen = fill_defaults(args, {"protocol": "standard", "num_experts": 40, "expert_epochs": 80, **preset})
    if args.preset:
        print(f"ddtime experts: preset {args.preset}: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    seq_len = args.seq_len if args.seq_len is not None else DEFAULT_LENGTHS[args.protocol]
    pred_len = args.pred_len if args.pred_len is not None else DEFAULT_LENGTHS[args.protocol]
    stride = args.stride if args.stride is not None else TRAIN_STRIDES[args.protocol]
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available")
    own_group = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=datetime.timedelta(hours=24))
        own_group = True
    try:
        data = ddtime.data.load_forecasting(args.data, protocol=args.protocol, seq_len=seq_len, pred_len=pred_len,
                                            stride=stride)
        store = train_experts(data, model=args.model, num_experts=args.num_experts,
                              expert_epochs=args.expert_epochs, optimizer=args.optimizer, lr=args.lr,
                              momentum=args.momentum, batch_size=args.batch_size, rho=args.rho, out_dir=args.out,
                              device=device, seed=args.seed, quiet=args.quiet)
        if _dist_info()[0] == 0:
            summary = {}
            for key in ("test_mse", "test_mae"):
                values = torch.tensor([e[key] for e in store.entries], dtype=torch.float64)
                summary[key] = f"{values.mean():.4f} +- {values.std(unbiased=False):.4f}"
            print(f"{store.num_experts} experts ({args.model}, {data.name}, {args.protocol} {seq_len}->{pred_len}) "
                  f"in {store.out_dir}: test MSE {summary['test_mse']}, MAE {summary['test_mae']}")
    finally:
        if own_group:
            dist.destroy_process_group()
    return 0
