"""ddtime.driver.evaluation: student recipes, students trained on a synthetic set, references."""
import pytest
import torch

from ddtime.driver.evaluation import (evaluate_synthetic, full_data_baseline, make_validator, random_subset, student_recipe,
                             train_students, validation_windows)

SEQ, PRED = 24, 12


pytestmark = pytest.mark.usefixtures("one_thread")


def test_recipes_follow_the_spec():
    condtsf = student_recipe("condtsf")
    assert (condtsf["optimizer"], condtsf["lr"], condtsf["momentum"], condtsf["batch_size"], condtsf["epochs"]) == \
        ("sgd", 1e-4, 0.9, 64, 250)
    standard = student_recipe("standard", epochs=7, lr=0.01)
    assert standard["optimizer"] == "adam" and standard["patience"] and standard["epochs"] == 7
    assert standard["lr"] == 0.01
    with pytest.raises(ValueError, match="protocol"):
        student_recipe("other")
    with pytest.raises(ValueError, match="epochs"):
        student_recipe("standard", epochs=0)


def test_validation_never_uses_test(data, condtsf_data):
    assert torch.equal(validation_windows(data), data.windows("val"))
    train = condtsf_data.windows("train")
    val = validation_windows(condtsf_data)
    assert val.shape[0] == train.shape[0] // 10 and torch.equal(val, train[-val.shape[0]:])


def test_students_mean_std_and_determinism(data):
    windows = random_subset(data, 8, seed=0)
    recipe = student_recipe("standard", epochs=5)
    a = train_students(windows, data, num_students=3, recipe=recipe, seed=0)
    b = train_students(windows, data, num_students=3, recipe=recipe, seed=0)
    assert a == b
    mses = [r["test_mse"] for r in a["runs"]]
    assert a["test_mse"] == pytest.approx(sum(mses) / 3)
    assert a["test_mse_std"] > 0 and a["test_mae"] > 0
    with pytest.raises(ValueError, match="num_students"):
        train_students(windows, data, num_students=0, recipe=recipe)


def test_more_data_and_real_training_help(data):
    recipe = student_recipe("standard", epochs=30)
    tiny = train_students(random_subset(data, 4, seed=0), data, num_students=1, recipe=recipe)
    full = full_data_baseline(data, epochs=2)
    assert full["test_mse"] < tiny["test_mse"]


def test_validator_and_random_subset(data):
    score = make_validator(data, recipe=student_recipe("standard", epochs=3))
    windows = random_subset(data, 6, seed=1)
    assert windows.shape == (6, data.window_channels, SEQ + PRED)
    assert score(windows) == score(windows) > 0
    assert not torch.equal(windows, random_subset(data, 6, seed=2))
    with pytest.raises(ValueError, match="size"):
        random_subset(data, 10**9)


def test_evaluate_synthetic_across_architectures(condtsf_data):
    windows = random_subset(condtsf_data, 6, seed=0)
    recipe = student_recipe("condtsf", epochs=3)
    out = evaluate_synthetic(windows, condtsf_data, models=("dlinear", "mlp"), num_students=2, recipe=recipe,
                             full_epochs=1)
    assert set(out) == {"dlinear", "mlp"}
    for entry in out.values():
        assert set(entry) == {"synthetic", "random_subset", "full_data"}
        assert len(entry["synthetic"]["runs"]) == 2
    with pytest.raises(ValueError, match="windows"):
        evaluate_synthetic(torch.zeros(2, 3, SEQ + PRED), condtsf_data)


def test_full_data_reference_is_cached_on_disk(data, monkeypatch, tmp_path):
    import ddtime.driver.evaluation.references as references

    monkeypatch.setenv("DDTIME_CACHE_DIR", str(tmp_path))
    calls = []
    real = references.train_model
    monkeypatch.setattr(references, "train_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = full_data_baseline(data, epochs=1)
    again = full_data_baseline(data, epochs=1)
    assert len(calls) == 1 and again == first  # the second call reads the cache
    assert len(list((tmp_path / "baselines").glob("*.json"))) == 1
    full_data_baseline(data, epochs=2)  # another recipe: another entry
    assert len(calls) == 2 and len(list((tmp_path / "baselines").glob("*.json"))) == 2
    next((tmp_path / "baselines").glob("*.json")).write_text("{not json")  # a damaged entry is recomputed
    full_data_baseline(data, epochs=1)
    full_data_baseline(data, epochs=2)
    assert len(calls) == 3


def test_condtsf_full_data_reference_is_the_experts_final_models(condtsf_data, tmp_path):
    from ddtime.driver.evaluation import experts_reference
    from ddtime.driver.experts import train_experts

    store = train_experts(condtsf_data, num_experts=2, expert_epochs=2, out_dir=tmp_path, quiet=True)
    ref = experts_reference(store)
    assert ref["test_mse"] == pytest.approx(sum(e["test_mse"] for e in store.entries) / 2)
    assert len(ref["runs"]) == 2
    # scored on the students' test windows: every 12th under the preset (CondTSF's distill.py)
    from ddtime.driver.experts.train import forecasting_network
    from ddtime.driver.models import assign_flat_params
    from ddtime.driver.training import evaluate

    windows = condtsf_data.windows("test", stride=12)
    want = [evaluate(assign_flat_params(forecasting_network(store.settings), store.trajectory(i)[-1]), windows, seq_len=24)["mse"]
            for i in range(2)]
    strided = experts_reference(store, condtsf_data, test_stride=12)
    assert strided["test_mse"] == pytest.approx(sum(want) / 2) and strided["test_mse"] != ref["test_mse"]
    recipe = student_recipe("condtsf", epochs=1, test_stride=12)
    full = evaluate_synthetic(random_subset(condtsf_data, 6, seed=0), condtsf_data, experts=store, num_students=1,
                              recipe=recipe)["dlinear"]["full_data"]
    assert full["test_mse"] == pytest.approx(strided["test_mse"])


def test_references_are_shared_through_the_cache_and_come_from_the_experts_under_condtsf(condtsf_data, tmp_path):
    from ddtime.driver.evaluation import experts_reference
    from ddtime.driver.experts import train_experts

    recipe = student_recipe("condtsf", epochs=2)
    windows = random_subset(condtsf_data, 6, seed=0)
    stores = [train_experts(condtsf_data, num_experts=1, expert_epochs=2, optimizer=opt, out_dir=tmp_path / opt,
                            quiet=True) for opt in ("sgd", "sam")]
    cache: dict = {}
    kw = dict(num_students=1, recipe=recipe, reference_cache=cache)
    sgd = evaluate_synthetic(windows, condtsf_data, experts=stores[0], **kw)["dlinear"]
    assert sgd["full_data"] == experts_reference(stores[0]) and len(cache) == 1
    again = evaluate_synthetic(windows + 1.0, condtsf_data, experts=stores[0], **kw)["dlinear"]
    assert len(cache) == 1 and again["random_subset"] is sgd["random_subset"]  # same subset: reused
    assert again["synthetic"] != sgd["synthetic"]
    sam = evaluate_synthetic(windows, condtsf_data, experts=stores[1], **kw)["dlinear"]
    assert len(cache) == 2 and sam["full_data"] == experts_reference(stores[1]) != sgd["full_data"]
    other_subset = evaluate_synthetic(windows, condtsf_data, experts=stores[0], subset=windows[:3], **kw)
    assert len(cache) == 3 and other_subset["dlinear"]["full_data"] == sgd["full_data"]
