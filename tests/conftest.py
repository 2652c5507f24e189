import logging
import os

import pytest
import torch

# Tests never touch the user's cache, never use the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))
# `zsrbench run` evaluates in one process unless a test asks for more (tests/test_cpu_jobs.py does)
os.environ["ZSRBENCH_JOBS"] = "1"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ZSRBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "zsrbench-cache"))


@pytest.fixture(autouse=True)
def _cwd_outside_the_repository(tmp_path_factory, monkeypatch):
    """Default output folders (results/, leaderboards/) land in a temp dir, never in the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def tiny_parts():
    from zsrbench.models.clip import build_clip

    torch.manual_seed(0)
    return build_clip("zsr-tiny")


@pytest.fixture(scope="module")
def one_training_thread():
    """A module's tests (training, the training losses) on one intra-op thread, quiet logs, built-ins loaded."""
    from zsrbench.registry import load_builtins

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)
    load_builtins()
    yield
    torch.set_num_threads(before)
