"""Every process ends with its parent: the one helper every part that starts a child uses.

- `preexec()` for `subprocess.Popen(..., preexec_fn=preexec())`;
- `process(ctx, target, args)` for a `multiprocessing` child (fork or spawn);
- `on_stop(callback)` to turn SIGTERM and SIGINT into a clean stop (children stopped, summary
  printed) instead of dying mid-way.

Both kinds of child ask the kernel (Linux `prctl(PR_SET_PDEATHSIG)`) for SIGTERM when their
parent dies, even by SIGKILL, so no publisher or worker is left running behind a dead parent.
Elsewhere than Linux the call is a no-op: parents still stop their children on SIGTERM.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
from collections.abc import Callable
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

PR_SET_PDEATHSIG = 1

try:  # loaded in the parent: a preexec_fn must not dlopen between fork and exec
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGTERM) -> None:
    """In a child: receive `sig` when the parent dies. With `parent_pid`, also when it died already."""
    if _LIBC is None:
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, int(sig))
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent was gone before prctl
        os.kill(os.getpid(), sig)


def preexec() -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child dies with this process."""
    return functools.partial(die_with_parent, os.getpid())


def _child_main(parent_pid: int, target: Callable[..., Any], *args: Any) -> Any:
    die_with_parent(parent_pid)
    return target(*args)


def process(ctx: BaseContext, target: Callable[..., Any], args: tuple[Any, ...] = (), **kw: Any) -> BaseProcess:
    """A `multiprocessing` process (not started) running `target(*args)` that dies with this process."""
    return ctx.Process(target=_child_main, args=(os.getpid(), target, *args), **kw)  # type: ignore[attr-defined]


def on_stop(callback: Callable[[], object]) -> Callable[[], None]:
    """Call `callback()` on SIGTERM or SIGINT; returns a function that restores the old handlers."""
    old = {s: signal.signal(s, lambda *_: callback()) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore
