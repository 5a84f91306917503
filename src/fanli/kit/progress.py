"""How a long operation says how far it has got.

A progress hook is called as ``hook(label, done, total)``. Two kinds of call share it:

- **A stage**: the label is one of the operation's stage names (``Stage``), ``done`` the number
  of stages already finished and ``total`` their number. "rating, 2, 5" means the third of five
  stages, rating, has begun.
- **Within a stage**: any other label, usually the path of the file being read, with ``done``
  and ``total`` in the stage's own unit (bytes, rows, row groups).

The command line draws the second kind as a bar per file; the web pages turn both into one
percentage (``Tracker``). An operation with no hook pays nothing: ``Stages.begin`` and the
readers do nothing when the hook is None.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum

ProgressHook = Callable[[str, int, int], None]


class Stage(StrEnum):
    """The named stages of Fanli's long operations. The web pages translate these names."""

    READING = "reading"  # reading and checking every cell of an input file
    CHECKING = "checking"  # checks against what is stored (duplicates, links)
    WRITING = "writing"  # writing the batch or the results
    EXPIRING = "expiring"  # ending agreements whose term is over
    PLANNING = "planning"  # choosing what an accrual run must re-rate
    RATING = "rating"  # the engine
    POSTING = "posting"  # journal lines for the deltas
    DETECTING = "detecting"  # an audit's detectors, one by one


_STAGE_NAMES = frozenset(stage.value for stage in Stage)


class Stages:
    """An operation's stages in order; ``begin(stage)`` reports that one has started."""

    def __init__(self, hook: ProgressHook | None, *stages: Stage) -> None:
        self._hook = hook
        self._stages = stages

    def begin(self, stage: Stage) -> None:
        if self._hook is not None:
            self._hook(stage.value, self._stages.index(stage), len(self._stages))


class Tracker:
    """One operation's progress as a fraction, fed by a hook; safe to read from another thread.

    A stage moves the fraction to its start; a call within a stage moves it through the
    stage's share (each stage has an equal share: the stages' durations vary with the data, so
    a finer weighting would only pretend to know them).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stage = ""
        self._index = 0
        self._count = 1
        self._within = 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        with self._lock:
            if label in _STAGE_NAMES:
                self._stage, self._index, self._count = label, done, max(total, 1)
                self._within = 0.0
            elif total > 0:
                self._within = min(max(done / total, 0.0), 1.0)

    @property
    def stage(self) -> str:
        """The stage under way ('' before the first)."""
        with self._lock:
            return self._stage

    @property
    def fraction(self) -> float:
        """How much of the operation is done, from 0 to 1 (1 only once it has finished)."""
        with self._lock:
            return min((self._index + self._within) / self._count, 0.99)
