"""Beyond one machine: DistributedDataParallel over corr2d_ext.Conv2d.

examples/ddp_train.py is started twice, as torchrun would start it (RANK, WORLD_SIZE, MASTER_ADDR
and MASTER_PORT in the environment), on the CPU with the gloo backend over the loopback
interface. The two processes' final weights must equal those of one process trained here, in
this process, on the same global batches: DDP averages the gradients of the per-process halves,
which is the gradient of the whole batch, so the steps are the same up to summation order.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Seconds the two processes get, all told, before they are killed and the test fails (they take
#: about 10 on two cores; most of it is importing torch).
TIMEOUT = 120

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="needs torch.distributed with the gloo backend")


def load_example(name: str):
    """examples/<name>.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port that nothing listens on at 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: What examples/ddp_train.py prints on each rank once its work is done and saved, just before it
#: destroys the process group.
TEARDOWN_MARK = "done, destroying the process group"

#: How many times the processes are started when the only failure is a crash in gloo's teardown.
ATTEMPTS = 3


def start_workers(args: list[str], world_size: int, tmp_path: Path) -> list[tuple[int, str]]:
    """Runs examples/ddp_train.py in `world_size` processes wired together as torchrun would,
    all on 127.0.0.1; returns each one's (exit code, output), killing any that outlast TIMEOUT."""
    port = free_port()
    procs, logs = [], []
    for rank in range(world_size):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                   LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port),
                   # gloo connects the processes over the loopback interface, not whatever
                   # address the host name resolves to.
                   GLOO_SOCKET_IFNAME="lo",
                   # One thread each (torchrun's default too): the processes share the cores.
                   OMP_NUM_THREADS="1")
        log = open(tmp_path / f"rank{rank}.log", "w+")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, str(EXAMPLES / "ddp_train.py"), *args],
                                      env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + TIMEOUT
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for proc, log in zip(procs, logs):
        log.seek(0)
        results.append((proc.returncode, log.read()))
        log.close()
    return results


def crashed_in_teardown(results: list[tuple[int, str]]) -> bool:
    """Whether the only failures in `results` ((exit code, output) per rank) are deaths by a
    signal after TEARDOWN_MARK; SIGKILL is start_workers' own, at the timeout."""
    return any(code != 0 for code, _ in results) and all(
        code == 0 or (code < 0 and code != -signal.SIGKILL and TEARDOWN_MARK in out)
        for code, out in results)


def run_workers(args: list[str], world_size: int, tmp_path: Path) -> None:
    """start_workers until every process exits 0; fails with their output otherwise.

    One failure is retried: a process killed by a signal (gloo's teardown has been seen to abort
    with "terminate called without an active exception", once in many CI runs) after it printed
    TEARDOWN_MARK, that is, after every rank finished training and saved its weights. A crash
    before that mark, a non-zero exit or a timeout fails at once (crashed_in_teardown)."""
    for attempt in range(1, ATTEMPTS + 1):
        results = start_workers(args, world_size, tmp_path)
        if all(code == 0 for code, _ in results):
            # The mark the retry looks for is printed by every rank that got through its work.
            assert all(TEARDOWN_MARK in out for _, out in results), results
            return
        outputs = "\n".join(f"--- rank {rank} (exit code {code}, attempt {attempt}) ---\n{out}"
                             for rank, (code, out) in enumerate(results))
        if not crashed_in_teardown(results) or attempt == ATTEMPTS:
            raise AssertionError(outputs)
        print(f"attempt {attempt}: a crash in the process group's teardown, retried\n{outputs}")


def test_two_processes_take_the_steps_of_one(tmp_path):
    ddp_train = load_example("ddp_train")
    epochs, per_process, samples, world_size = 2, 16, 256, 2
    run_workers(["--cpu", "--dtype", "float64", "--epochs", str(epochs),
                 "--batch-size", str(per_process), "--samples", str(samples),
                 "--out", str(tmp_path)], world_size, tmp_path)
    replicas = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]

    one = ddp_train.train(epochs=epochs, batch_size=per_process * world_size, samples=samples,
                          dtype=torch.float64, log=lambda *_: None).state_dict()
    initial = ddp_train.make_model(dtype=torch.float64).state_dict()

    assert replicas[0].keys() == one.keys()
    for name, expected in one.items():
        # Training moved every parameter, so agreeing is not agreeing on the initial weights.
        assert (expected - initial[name]).abs().max() > 1e-3, f"{name} barely changed"
        for rank, replica in enumerate(replicas):
            torch.testing.assert_close(replica[name], expected, rtol=1e-9, atol=1e-11,
                                       msg=lambda m: f"rank {rank}, {name}: {m}")
    # DDP keeps the replicas identical: every process applies the same averaged gradient.
    for name in one:
        assert torch.equal(replicas[0][name], replicas[1][name]), name


def test_only_a_crash_after_the_work_is_retried():
    done = f"epoch 2/2: loss 1.0\nrank 1: {TEARDOWN_MARK}\n"
    abort = "terminate called without an active exception\n"
    assert crashed_in_teardown([(0, done), (-6, done + abort)])
    assert not crashed_in_teardown([(0, done), (0, done)])  # nothing to retry
    assert not crashed_in_teardown([(0, done), (-6, abort)])  # died before the mark
    assert not crashed_in_teardown([(0, done), (1, done)])  # an error exit, not a signal
    assert not crashed_in_teardown([(0, done), (-9, done)])  # killed at the timeout
