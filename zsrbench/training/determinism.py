"""Training that gives the same weights on any machine of the same kind (:func:`pinned_threads`)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch


CPU_TRAIN_THREADS = 1  # intra-op threads of training on a CPU (see pinned_threads)


@contextmanager
def pinned_threads(device: torch.device) -> Iterator[dict[str, Any]]:
    """Run training so that the same recipe and seed give bit-identical weights on any core count.

    On a CPU, matrix products and reductions split their work over the intra-op threads, and the split changes
    the order of floating-point additions: 1 and 2 threads give weights that differ in the last bits after one
    step and visibly after hundreds. Inside this block torch uses ``CPU_TRAIN_THREADS`` (1) intra-op thread, so
    the order is fixed whatever the machine's core count (restored afterwards). On a GPU nothing is changed;
    the determinism settings in force are returned for the manifest (cuDNN, deterministic algorithms, TF32,
    ``CUBLAS_WORKSPACE_CONFIG``): run-to-run identity there needs deterministic kernels, which zsrbench does not
    force. The dictionary yielded is what the manifest records under ``determinism``.
    """
    if device.type != "cpu":
        yield {"device": device.type, "cpu_intra_op_threads": torch.get_num_threads(),
               "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
               "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
               "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
               "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32), "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
               "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_TRAIN_THREADS)
    try:
        yield {"device": "cpu", "cpu_intra_op_threads": CPU_TRAIN_THREADS, "machine_threads": before,
               "rule": "training runs on one intra-op thread whatever the core count, so the order of floating-point "
                       "reductions (and the weights) do not depend on the machine's cores"}
    finally:
        torch.set_num_threads(before)
