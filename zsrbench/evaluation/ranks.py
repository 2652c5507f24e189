"""Spreading a run's work units over processes with torch.distributed.

``torchrun --nproc-per-node N -m zsrbench run ...`` (and ``--nnodes`` across machines) starts N ranks; each
rank joins the process group here (gloo on CPU, NCCL on GPU), takes units from one shared queue (a counter in
the process group's own key-value store, so a slow unit never leaves another rank idle), evaluates them and
writes each to disk as it finishes; rank 0 gathers every rank's units, writes the records and the leaderboard.
``zsrbench run --jobs N`` on one machine starts the same ranks through torch's elastic launch API, with every
store in a private file and every socket on the loopback interface (see :func:`launch_local`).

Results do not depend on the number of ranks: a unit's flags depend only on its samples and settings (see
:mod:`zsrbench.evaluation.units`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.distributed as dist

from zsrbench.errors import ZsrError

if TYPE_CHECKING:
    from zsrbench.evaluation.config import RunConfig

ENV_VAR = "ZSRBENCH_JOBS"
JOBS_RANK = "ZSRBENCH_JOBS_RANK"  # set in the ranks `--jobs` starts (their launching process already reported)
JOBS_STORE = "ZSRBENCH_JOBS_STORE"  # the ranks of `--jobs`: the file of their process group's store (no TCP store)
MEMORY_FACTOR = 8  # a rank needs about this many times its model's bytes (weights, activations, attack state)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> World:
    """The rank of this process as torchrun (or the elastic agent) set it; one process otherwise."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return World()
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def join(world: World, device: str) -> str:
    """Join the process group (once) and return this rank's device (``cuda:LOCAL_RANK`` on GPUs)."""
    if world.size == 1:
        return device
    if device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        store = os.environ.get(JOBS_STORE)
        if store:  # a --jobs rank: the store is a file, gloo's sockets are on the loopback interface
            dist.init_process_group(backend=backend, store=dist.FileStore(store, world.size), rank=world.rank,
                                    world_size=world.size)
        else:  # torchrun: its env:// rendezvous (MASTER_ADDR, MASTER_PORT)
            dist.init_process_group(backend=backend)
    return device


def leave(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def broadcast(world: World, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World, obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (a list by rank); None on the other ranks."""
    if world.size == 1:
        return [obj]
    out: list[Any] | None = [None] * world.size if world.main else None
    dist.gather_object(obj, out, dst=0)
    return out


class Queue:
    """Indices ``0 … n-1`` handed out once each, across all ranks, in order (a counter in the group's store)."""

    def __init__(self, world: World, n: int, name: str = "zsrbench/next") -> None:
        self.world, self.n, self.key, self.next = world, n, name, 0
        self.store = _store() if world.size > 1 else None

    def take(self) -> int | None:
        if self.store is None:
            i, self.next = self.next, self.next + 1
        else:
            i = int(self.store.add(self.key, 1)) - 1
        return i if i < self.n else None


class Progress:
    """Samples done per dataset, counted by every rank; rank 0 shows them (rate and ETA across all ranks)."""

    def __init__(self, world: World, totals: dict[str, int], enabled: bool, title: Callable[[str], str]) -> None:
        self.world, self.totals = world, totals
        self.store = _store() if world.size > 1 else None
        self.enabled = enabled and world.main
        self._stop = threading.Event()
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        self._title = title

    def __enter__(self) -> "Progress":
        if self.enabled:
            from zsrbench.log import progress_display

            self._bar = progress_display(True)
            self._bar.__enter__()
            self._tasks = {d: self._bar.add_task(self._title(d), total=n) for d, n in self.totals.items()}
            if self.store is not None:
                threading.Thread(target=self._poll, daemon=True).start()
        return self

    def advance(self, dataset: str, n: int) -> None:
        if self.store is not None:
            self.store.add(f"zsrbench/done/{dataset}", n)
        elif self._bar is not None:
            self._bar.advance(self._tasks[dataset], n)

    def stage(self, dataset: str, text: str) -> None:
        """What the attacks of ``dataset``'s current unit are doing (shown beside its bar)."""
        if self.store is not None:
            self.store.set(f"zsrbench/stage/{dataset}", text)
        elif self._bar is not None:
            self._bar.update(self._tasks[dataset], description=f"{self._title(dataset)} {text}")

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            self._refresh()

    def _refresh(self) -> None:
        for d, task in self._tasks.items():
            key = f"zsrbench/stage/{d}"
            text = self.store.get(key).decode(errors="replace") if self.store.check([key]) else ""
            self._bar.update(task, completed=int(self.store.add(f"zsrbench/done/{d}", 0)),
                             description=f"{self._title(d)} {text}".rstrip())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._bar is not None:
            if self.store is not None:
                self._refresh()
            self._bar.__exit__(*exc)


def _store() -> Any:
    from torch.distributed import distributed_c10d

    return distributed_c10d._get_default_store()


# ------------------------------------------------------------------------------- how many ranks on one machine
def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def parse_jobs(value: str | int | None) -> int | None:
    """``None``/``"auto"`` -> None (decide per run), else a positive number of processes."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ZsrError(f"--jobs takes a number of processes or 'auto'; got '{value}'.") from None
    if n < 1:
        raise ZsrError(f"--jobs must be at least 1 (or 'auto'); got {n}.")
    return n


def resolve_jobs(requested: int | None, device: str, n_units: int, model_bytes: int = 0) -> int:
    """How many local processes evaluate a run of ``n_units`` units.

    An explicit request is honoured on CPU; more processes than units is an error. ``auto`` is 1 on a GPU (use
    torchrun for several GPUs), else ``$ZSRBENCH_JOBS`` when set, else one per usable core, capped by the units
    and by free memory.
    """
    on_cpu = device.startswith("cpu")
    if not on_cpu and requested is not None and requested > 1:
        raise ZsrError(f"--jobs {requested} starts CPU processes; for several GPUs start the run with "
                       "`torchrun --nproc-per-node N -m zsrbench run ...` (one rank per GPU).")
    if requested is not None and requested > max(n_units, 1):
        raise ZsrError(f"--jobs {requested} asks for more processes than the run has work units ({n_units}: "
                       f"batches of its datasets); pass --jobs {max(n_units, 1)} or fewer.")
    if not on_cpu:
        return 1
    if requested is None:
        requested = parse_jobs(os.environ.get(ENV_VAR))
    if requested is None:
        requested = usable_cores()
        mem = available_memory()
        if mem is not None and model_bytes > 0:
            requested = min(requested, max(1, mem // (MEMORY_FACTOR * model_bytes)))
    return max(1, min(requested, n_units))


def check_world(world: World, n_units: int) -> None:
    if world.size > n_units:
        raise ZsrError(f"This run has {n_units} work units (batches of its datasets) but was started with "
                       f"{world.size} ranks; start it with at most {n_units} (e.g. torchrun --nproc-per-node "
                       f"{n_units}), or evaluate more samples.")


# ------------------------------------------------------------------------------------- --jobs: elastic launch
# torch.distributed's stores have no authentication, and a TCPStore server listens on every interface whatever
# host it is given: a local --jobs run therefore uses none. The rendezvous of the elastic agent and the ranks'
# process group keep their stores in files of a private temporary folder, the agent shares no TCP store with the
# ranks (TORCH_DISABLE_SHARE_RDZV_TCP_STORE), and gloo's sockets are bound to the loopback interface
# (GLOO_SOCKET_IFNAME). The only sockets of such a run listen on 127.0.0.1.
LOOPBACK = "127.0.0.1"


def loopback_interface() -> str:
    """The name of this machine's loopback interface (``lo`` on Linux, ``lo0`` on macOS and the BSDs)."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:  # pragma: no cover - no interface list
        names = []
    for name in ("lo", "lo0"):
        if name in names:
            return name
    return next((n for n in names if n.startswith("lo")), "lo")


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rank_entry(run: Callable[..., Any], cfg: "RunConfig", threads: int, verbose: bool, progress: bool,
                errors: str) -> list[str]:
    """What each rank started by :func:`launch_local` runs: ``run(cfg)`` (the launching run's own entry point),
    as one rank of the group. A user error is left in ``errors`` (a folder) for the launching process to show,
    then the rank fails."""
    from zsrbench.log import info, setup_logging

    torch.set_num_threads(threads)
    os.environ[JOBS_RANK] = "1"
    os.environ[JOBS_STORE] = str(Path(errors) / "group.store")  # (a file in the launcher's private folder)
    os.environ["GLOO_SOCKET_IFNAME"] = loopback_interface()  # gloo listens on 127.0.0.1 only
    if verbose and launched().main:
        setup_logging()
    log = info if verbose and launched().main else None
    try:
        return [str(r.path) for r in run(cfg, progress=progress, log=log)]
    except ZsrError as exc:
        Path(errors, f"rank{launched().rank}.txt").write_text(str(exc))
        raise


@contextlib.contextmanager
def serial_until_launch(device: str, requested: int | None) -> Iterator[None]:
    """The launching process's preparation (model load, plan) on one intra-op thread when the run may start
    ``--jobs`` ranks on CPU, so that it starts no OpenMP thread pool and :func:`launch_local` can fork the ranks
    (the forked child of a process whose OpenMP pool ran hangs at its first parallel region); the thread count is
    restored afterwards for a run that stays in this process."""
    if not device.startswith("cpu") or requested == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


FORK_PROBE_SECONDS = 1.0  # a healthy forked child finishes its probe in ≈ 0.05 s; a slower one means spawn


def start_method(device: str, threads: int) -> str:
    """How :func:`launch_local` starts its ranks: ``fork`` for a CPU run when a forked probe runs a parallel
    region on ``threads`` threads and exits, so that the ranks inherit torch, open_clip, zsrbench and the loaded
    data instead of importing them again (a spawned rank spends ≈ 10 s of a 2-core machine starting); ``spawn``
    otherwise: on a GPU (CUDA does not survive a fork), without ``fork``, or when the probe hangs (this process
    ran an OpenMP pool before, see :func:`serial_until_launch`)."""
    import multiprocessing

    if not device.startswith("cpu") or torch.cuda.is_initialized() or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "fork" if _fork_probe(threads) else "spawn"


def _fork_probe(threads: int) -> bool:
    """Whether a forked child of this process completes a parallel torch region on ``threads`` threads."""
    import signal
    import time

    pid = os.fork()
    if pid == 0:  # the child: one parallel region, then leave without running any cleanup of the parent's
        code = 1
        try:
            torch.set_num_threads(max(2, threads))
            torch.ones(1 << 18).mul_(2).sum()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + FORK_PROBE_SECONDS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def launch_local(run: Callable[..., Any], cfg: "RunConfig", jobs: int, *, verbose: bool,
                 progress: bool) -> list[str]:
    """Run ``run(cfg)`` as ``jobs`` ranks on this machine (torch's elastic launch); rank 0's record paths.
    ``run`` is a module-level function (each spawned rank imports it by name); it is handed down so that this
    layer never imports the runner above it.

    Nothing of the run listens on a network interface: the rendezvous store and the ranks' store are files in a
    private temporary folder (no TCPStore), and gloo binds to the loopback interface (see above)."""
    import logging
    import tempfile

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    threads = max(1, usable_cores() // jobs)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # failures are reported below
    with tempfile.TemporaryDirectory(prefix="zsrbench-ranks-") as errors:
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=jobs, rdzv_backend="c10d",
                              rdzv_endpoint=str(Path(errors) / "rendezvous.store"),
                              rdzv_configs={"store_type": "file"}, local_addr=LOOPBACK,
                              run_id=f"zsrbench-{os.getpid()}", max_restarts=0, monitor_interval=0.2,
                              start_method=start_method(cfg.device, threads))
        try:
            with _environ(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1"):  # the agent hosts no TCP store for the ranks
                out = elastic_launch(config, _rank_entry)(run, replace(cfg, jobs=1), threads, verbose, progress, errors)
        except ChildFailedError as exc:
            raise ZsrError(_failure_text(exc, Path(errors))) from None
        except SignalException as exc:  # the launching process was told to stop (SIGTERM, SIGHUP, ...)
            raise ZsrError(f"The run was stopped ({exc.sigval.name}); its --jobs processes were ended. Units "
                           "finished before are kept: run the same command with --resume.") from None
    return list(out[0])


def _failure_text(exc: Any, errors: Path) -> str:
    """The first rank's user error when one had one, else what the launcher says of the first failed rank."""
    kept = "Units finished before the failure are kept: fix the cause and run the same command with --resume."
    told = sorted(errors.glob("rank*.txt"))
    if told:
        return f"{told[0].read_text().rstrip()} ({kept})"
    rank, failure = exc.get_first_failure()
    lines = str(failure.message).strip().splitlines()
    return f"Rank {rank} of the --jobs processes failed: {lines[-1] if lines else 'no message'}. {kept}"
