"""Command line: ``ddtime {experts,distill,evaluate,compare} ...`` (also ``python -m ddtime``).

Each subcommand lives in its module of this package, which exposes ``configure_parser(parser)``
and ``run(args) -> int`` and holds nothing but argument handling: the work is done by the
driver's library modules. :mod:`.options` holds the options ``distill`` and ``compare`` share,
:mod:`.types` the argparse value types. Bad option values stop with an error naming the option; every error a
command meets (bad data, a busy expert directory, a missing extra) ends as one line and exit
status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = {
    "experts": ("ddtime.driver.commands.experts", "train expert trajectories (resumable)"),
    "distill": ("ddtime.driver.commands.distill",
                "distil a dataset with a base method (+CondTSF, +DDTime) and evaluate it"),
    "evaluate": ("ddtime.driver.commands.evaluate", "evaluate a saved synthetic set with fresh students"),
    "compare": ("ddtime.driver.commands.compare", "grid of methods x {base, +condtsf, +ddtime, +both} on one dataset"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddtime", description="Dataset distillation for time-series forecasting.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        child = sub.add_parser(name, help=help_text, description=help_text)
        module.configure_parser(child)
        child.set_defaults(_run=module.run, _parser=child)
    return parser


#: modules of the ``driver`` extra (pyproject.toml) and of the ``classification`` extra
EXTRAS = {"pandas": "driver", "safetensors": "driver", "tqdm": "driver", "matplotlib": "driver",
          "sklearn": "classification"}


def _missing_extra(exc: ModuleNotFoundError) -> str | None:
    root = (exc.name or "").split(".")[0]
    if root in EXTRAS:
        return (f"ddtime: the command line needs the '{EXTRAS[root]}' extra (module {root!r} is missing): "
                f"pip install 'ddtime[{EXTRAS[root]}]'")
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ddtime`` console script; returns the exit status."""
    try:
        parser = build_parser()  # imports the subcommand modules, hence the driver's dependencies
        args = parser.parse_args(argv)
        try:
            return int(args._run(args) or 0)
        except (ValueError, TypeError, OSError, RuntimeError) as exc:  # FileNotFoundError is an OSError
            args._parser.error(str(exc))  # prints usage + "error: ..." and exits with status 2
    except ModuleNotFoundError as exc:
        message = _missing_extra(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
