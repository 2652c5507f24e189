import os

import pytest
import torch

# Tests never touch the user's cache, never use the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ZSRBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "zsrbench-cache"))


@pytest.fixture(scope="session")
def tiny_parts():
    from zsrbench.models import build_clip

    torch.manual_seed(0)
    return build_clip("zsr-tiny")
