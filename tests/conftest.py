"""Fixtures shared by the tests: the kernel tests' device, one torch thread, the generated dataset,
tiny experts."""
import pytest
import torch
from tolerances import DEVICES

SEQ, PRED = 24, 12


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Full-data references are cached on disk: keep the suite's cache out of the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DDTIME_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(params=DEVICES)
def device(request):
    """Each kernel test that takes it runs on the CPU and, where built and present, on CUDA."""
    return request.param


@pytest.fixture(scope="module")
def one_thread():
    """Small models gain nothing from intra-op threads; a shared 2-core machine loses a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data():
    """The built-in generated dataset, standard protocol, 24 -> 12."""
    import ddtime.driver.data

    return ddtime.driver.data.load_forecasting(None, seq_len=SEQ, pred_len=PRED)


@pytest.fixture(scope="session")
def condtsf_data():
    import ddtime.driver.data

    return ddtime.driver.data.load_forecasting(None, protocol="condtsf", seq_len=SEQ, pred_len=PRED)


@pytest.fixture(scope="session")
def experts(data, tmp_path_factory):
    """Two DLinear experts x 6 epochs on ``data``."""
    from ddtime.driver.experts import train_experts

    return train_experts(data, num_experts=2, expert_epochs=6, out_dir=tmp_path_factory.mktemp("experts"), quiet=True)
