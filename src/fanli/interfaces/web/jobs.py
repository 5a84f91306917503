"""Long operations started from the web pages (imports, accrual runs, audits) run as jobs.

The request that starts one hands the work to a worker thread and answers at once with the
job's page, which shows a progress bar fed by the service's progress hook
(``fanli.kit.progress``) and asks again every moment (HTMX). The rest of the application stays
usable meanwhile: every page names the viewer's jobs under way. When the job ends, its page
becomes the page it was started from, showing what happened or why nothing was stored.

Each job does its work in one unit of work of its own, as a request would, so a failure stores
nothing. A job belongs to the user who started it (nobody else sees it) and to the process
that runs it: ``fanli serve`` and ``fanli web-demo`` run one process. Finished jobs are kept for
their page until ``KEEP`` newer ones have been started.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fanli.kit.errors import FanliError
from fanli.kit.progress import ProgressHook, Tracker

log = logging.getLogger(__name__)

WORKERS = 2  # jobs that run at once; writers queue on the database's locks anyway
KEEP = 200  # jobs remembered, finished or not

Outcome = dict[str, Any]
"""What the page a job was started from shows once it has ended (``done``, ``error``...)."""


@dataclass
class Job:
    """One long operation: whose, what it is called, where it goes back to, how far it is."""

    id: str
    owner: str  # the user code that started it
    title: str  # a message id of the catalogs, translated when shown
    title_values: dict[str, Any]
    back: str  # the path of the page it was started from
    show: Any  # renders the page it was started from with the outcome (a web view)
    tracker: Tracker = field(default_factory=Tracker)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    outcome: Outcome = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.ended is not None

    @property
    def percent(self) -> int:
        return 100 if self.finished else int(self.tracker.fraction * 100)

    @property
    def seconds(self) -> int:
        return int((self.ended or time.monotonic()) - self.started)


class JobBoard:
    """The jobs of this process: started on a small pool of threads, looked up by their owner."""

    def __init__(self, workers: int = WORKERS, keep: int = KEEP) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanli-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self.closing = False

    def start(
        self,
        *,
        owner: str,
        title: str,
        back: str,
        work: Callable[[ProgressHook], Outcome],
        show: Any,
        title_values: dict[str, Any] | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> Job:
        """Queue ``work(progress)``; it returns the outcome to show, or raises ``FanliError``
        (shown as the error; the work's unit of work has stored nothing)."""
        job = Job(secrets.token_urlsafe(12), owner, title, title_values or {}, back, show)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, work, cleanup)
        return job

    def _run(
        self, job: Job, work: Callable[[ProgressHook], Outcome], cleanup: Callable[[], None] | None
    ) -> None:
        try:
            if self.closing:  # queued when the server began to stop: not started at all
                job.outcome = {"error_stopped": True}
                return
            job.outcome = work(job.tracker)
        except FanliError as error:
            job.outcome = {"refusal": error}  # said in the reader's language on the page
        except Exception:  # a bug, not bad input: log it, say so, never leave the page waiting
            log.exception("job %s (%s) failed", job.id, job.title)
            job.outcome = {"error_unexpected": True}
        finally:
            if cleanup is not None:
                cleanup()
            job.ended = time.monotonic()

    def find(self, job_id: str, owner: str) -> Job | None:
        """The job, if it exists and ``owner`` started it."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def under_way(self, owner: str) -> list[Job]:
        """The owner's jobs that have not ended, oldest first."""
        with self._lock:
            return [j for j in self._jobs.values() if j.owner == owner and not j.finished]

    def close(self) -> None:
        """Let running jobs end (their transactions commit or roll back); queued ones end
        without starting, their files removed."""
        self.closing = True
        self._pool.shutdown(wait=True)
