"""The ``standard`` preset: experts' learning rate as an expert setting, SGD students, one-flag resolution."""
import argparse

import pytest

from ddtime.driver.commands.options import (add_common_options, evaluation_config, expert_request, load_data,
                                            resolve)
from ddtime.driver.evaluation import student_recipe
from ddtime.driver.experts.cache import ensure_experts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_student_recipe_optimizer_override():
    sgd = student_recipe("standard", optimizer="sgd", lr=1e-2)
    assert (sgd["optimizer"], sgd["momentum"], sgd["lr"], sgd["patience"], sgd["epochs"]) == ("sgd", 0.9, 1e-2, 20, 300)
    assert student_recipe("standard", optimizer="adam") == student_recipe("standard")
    adam = student_recipe("condtsf", optimizer="adam")
    assert adam["optimizer"] == "adam" and "momentum" not in adam
    with pytest.raises(ValueError, match="optimizer"):
        student_recipe("standard", optimizer="rmsprop")


def test_ensure_experts_keys_on_lr(data, tmp_path):
    slow = ensure_experts(data, directory=tmp_path, num_experts=1, expert_epochs=1, quiet=True)
    fast = ensure_experts(data, directory=tmp_path, num_experts=1, expert_epochs=1, lr=1e-2, quiet=True)
    assert slow.settings["lr"] == 5e-4 and fast.settings["lr"] == 1e-2
    assert fast.out_dir != slow.out_dir and "lr0.01" in fast.out_dir.name
    again = ensure_experts(data, directory=tmp_path, num_experts=1, expert_epochs=1, lr=1e-2, quiet=True)
    assert again.out_dir == fast.out_dir


def test_standard_preset_one_flag(tmp_path):
    parser = argparse.ArgumentParser()
    add_common_options(parser)
    parser.add_argument("--out", default=str(tmp_path))
    args = parser.parse_args(["--data", "synthetic", "--preset", "standard", "--num-experts", "3"])
    resolve(args)
    data = load_data(args)
    assert (data.protocol, data.seq_len, data.pred_len, args.samples) == ("standard", 96, 96, 10)
    request = expert_request(args)
    assert (request.num_experts, request.epochs, request.lr) == (3, 20, 1e-2)
    recipe = evaluation_config(args, data.protocol).recipe
    assert (recipe["optimizer"], recipe["lr"], recipe["momentum"]) == ("sgd", 1e-2, 0.9)
    assert args.method_defaults["mtt"] == {"student_lr": 1e-2, "learn_lr": True}
    assert args.method_defaults["datm"] == {"student_lr": 1e-2, "learn_lr": True, "window_every": 100}
