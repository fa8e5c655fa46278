"""Work that may spin in C code, run in a child process and stopped at a time limit (automation.max_train_seconds).

scikit-learn's solvers cannot be interrupted from Python: riskcore.model.training fits its models
here, and fails with one sentence (TrainingTimedOut) when the limit passes.
"""

from __future__ import annotations

import os
import warnings

from riskcore.contract import DataError


class TrainingTimedOut(DataError):
    """The solver did not finish within the time limit; it was stopped and nothing was written."""


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when its parent dies (prctl PR_SET_PDEATHSIG), so a solver left
    spinning never outlives the run, nor keeps the run lock it inherited; elsewhere, nothing."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def _child(job, args: tuple, pipe, parent: int) -> None:
    """In the child process: run job(*args), and send back ("value", its result) or ("error", exception)."""
    from threadpoolctl import threadpool_limits

    _die_with_parent(parent)
    try:
        with threadpool_limits(limits=1):  # a thread pool the parent started is not in a forked child
            pipe.send(("value", job(*args)))
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        pipe.send(("error", exc))
    finally:
        pipe.close()


def run_within(seconds: float, stopped: str, job, *args):
    """job(*args) in a process of its own, killed after `seconds` (TrainingTimedOut, the sentence `stopped`).

    A solver spinning in C code cannot be interrupted from Python, so it runs in a child process,
    forked from this one: it starts in milliseconds with scikit-learn already imported and the rows
    already in memory (only the result comes back through the pipe), where a fresh interpreter
    took 1-2 s to import scikit-learn on the first fit of each run. The child calls scikit-learn and
    numpy only, never polars, whose thread pool is not in a forked child; its BLAS and OpenMP pools are
    limited to one thread; and it dies with its parent (_die_with_parent), so a child left spinning
    never keeps the run lock it inherited.
    """
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(job, args, sender, os.getpid()), daemon=True)
    with warnings.catch_warnings():
        # Python 3.12+ warns at every fork of a process with threads (polars' and OpenBLAS's pools are): the
        # child above touches neither polars nor a pool of more than one thread.
        warnings.filterwarnings("ignore", message=r".*is multi-threaded, use of fork\(\) may lead to deadlocks",
                                category=DeprecationWarning)
        process.start()
    sender.close()
    try:
        if not receiver.poll(seconds):
            raise TrainingTimedOut(stopped)
        try:
            outcome, value = receiver.recv()
        except EOFError:
            process.join()
            raise RuntimeError(f"the training process ended without a result (exit code {process.exitcode})") from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receiver.close()
    if outcome == "error":
        raise value
    return value
