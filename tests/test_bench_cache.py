"""bench/cell_cache.py and bench/results_writer.source_hash: a cached cell of bench/reproduce_*.py is
reused only under the same resolved settings and code."""
import json
import pathlib
import sys

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import cell_cache  # noqa: E402
import results_writer  # noqa: E402


def test_prepare_reuses_only_a_finished_cell_of_the_same_key(tmp_path, monkeypatch):
    monkeypatch.setattr(cell_cache, "_recomputed", set())
    cell = tmp_path / "cell"
    key = {"settings": {"lr": 0.1}, "source": "abc"}
    assert not cell_cache.prepare(cell, key, done="results.json")  # new: run it
    (cell / "checkpoint.pt").write_text("half")
    assert not cell_cache.prepare(cell, key, done="results.json")  # interrupted, same key: resume it
    assert (cell / "checkpoint.pt").exists()
    (cell / "results.json").write_text("{}")
    assert cell_cache.prepare(cell, key, done="results.json")  # finished, same key: reuse
    for other in ({**key, "source": "abd"}, {**key, "settings": {"lr": 0.2}}):
        assert not cell_cache.prepare(cell, other, done="results.json")  # other code or settings: recompute
        assert sorted(p.name for p in cell.iterdir()) == [cell_cache.KEY_FILE]
        assert json.loads((cell / cell_cache.KEY_FILE).read_text()) == other
        (cell / "results.json").write_text("{}")
    # fresh: recomputed once per process, then reused by the other tables that share the cell
    assert not cell_cache.prepare(cell, other, done="results.json", fresh=True)
    assert not (cell / "results.json").exists()
    (cell / "results.json").write_text("{}")
    assert cell_cache.prepare(cell, other, done="results.json", fresh=True)


def test_distill_settings_are_resolved_and_tell_cells_apart():
    base = ["distill", "--data", "synthetic", "--preset", "condtsf", "--method", "mtt", "--out", "x", "--quiet"]
    settings = cell_cache.distill_settings(base)
    assert settings["config"]["iterations"] == 300 and settings["data"]["scale"] == "series"  # the preset's
    assert settings["evaluation"]["recipe"]["epochs"] == 251  # the preset's: CondTSF's range(Epoch + 1)
    assert cell_cache.distill_settings([*base, "--scale", "train"])["data"]["scale"] == "train"
    assert cell_cache.distill_settings([*base, "--eval-epochs", "5"])["evaluation"] != settings["evaluation"]
    assert cell_cache.distill_settings([*base, "--condtsf"])["config"] != settings["config"]


def test_source_hash_follows_code_not_docstrings(tmp_path):
    for sub in ("ddtime", "csrc"):
        (tmp_path / sub).mkdir()
    module = tmp_path / "ddtime" / "m.py"
    kernel = tmp_path / "csrc" / "k.cpp"
    kernel.write_text("int f() { return 1; }\n")

    def digest(text: str) -> str:
        module.write_text(text)
        results_writer.source_hash.cache_clear()
        return results_writer.source_hash(tmp_path)

    first = digest('"""Doc."""\n\ndef f():\n    """Doc."""\n    return 1  # one\n')
    assert digest('"""Other doc."""\n\n\ndef f():\n    return 1  # comment\n') == first
    assert digest('def f():\n    return 2\n') != first
    digest('"""Doc."""\n\ndef f():\n    """Doc."""\n    return 1  # one\n')
    kernel.write_text("int f() { return 2; }\n")
    results_writer.source_hash.cache_clear()
    assert results_writer.source_hash(tmp_path) != first
    results_writer.source_hash.cache_clear()


def test_grid_table_random_subset_over_seeds_and_gain_over_the_better_reference(tmp_path):
    import reproduce_ddtime

    def run(mse, random):
        return {"test_mse": mse, "test_mae": mse, "random_subset_test_mse": random, "full_data_test_mse": 0.3}

    table = {"ETTh1": {"mtt": {"base": [run(0.60, 0.50), run(0.64, 0.54)],  # random subset better than base
                               "+DDTime": [run(0.45, 0.50), run(0.47, 0.54)]}}}
    path = tmp_path / "table.md"
    reproduce_ddtime._write_grid(table, path, "t", "--part main", None)
    text = path.read_text()
    assert "Random real subset 0.5200 ± 0.0200" in text  # mean ± std over the two seeds, not seed 0's 0.5000
    # +DDTime: gain vs base (0.62 -> 0.46) +25.8%, vs the better reference (random 0.52) +11.5%
    assert "| MTT | +DDTime | 0.4600 ± 0.0100 | 0.4600 ± 0.0100 | +25.8% | +11.5% | 2 |" in text
    assert "| MTT | base | 0.6200 ± 0.0200 | 0.6200 ± 0.0200 | - | -19.2% | 2 |" in text
