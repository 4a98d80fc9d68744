"""Work that takes longer than a request: a capture (it runs the command
for its duration) and an export (ssh to the other host). Each runs in a
thread of its own with a catalogue of its own; its page follows it through
an event stream. One capture at a time: a capture measures what the
command uses, and a second one beside it would disturb the figures."""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from .._errors import AdmissionRefused, CatalogueError, GovernorError, PolicyError
from ..catalogue import Catalogue
from .forms import field_of

log = logging.getLogger(__name__)
KEEP = 50          # finished jobs remembered


@dataclass
class Job:
    id: str
    kind: str                      # capture, export
    title: str
    duration: float | None         # seconds the command is to run, when known
    state: str = "running"         # running, done, failed
    step: str = "starting"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: dict | None = None
    error: str | None = None
    error_field: str | None = None  # the form field the error names
    admission: dict | None = None  # a refusal's table
    stop: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items() if k != "stop"}
        d["elapsed"] = (self.finished or time.time()) - self.started
        return d


class Jobs:
    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def start(self, kind: str, title: str, work, duration: float | None = None) -> Job:
        """Runs work(catalogue, job) -> dict in a thread. CatalogueError if
        a job of this kind that must run alone is running."""
        with self._lock:
            if kind == "capture":
                busy = [j for j in self._jobs.values() if j.kind == kind and j.state == "running"]
                if busy:
                    raise CatalogueError(f"a capture runs already ({busy[0].title}): wait for "
                                         "it, or stop it", key="name")
            job = Job(secrets.token_hex(8), kind, title, duration)
            self._jobs[job.id] = job
            for old in [j for j in self._jobs.values() if j.state != "running"][:-KEEP]:
                del self._jobs[old.id]
        threading.Thread(target=self._run, args=(job, work), name=f"console-{kind}",
                         daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, work) -> None:
        try:
            with Catalogue() as cat:
                job.result = work(cat, job)
            job.state = "done"
        except AdmissionRefused as e:
            job.state, job.error, job.admission = "failed", str(e), e.admission.as_dict()
        except (CatalogueError, PolicyError) as e:
            job.state, job.error, job.error_field = "failed", str(e), field_of(e)
        except GovernorError as e:
            job.state, job.error = "failed", str(e)
        except Exception as e:          # shown on the job's page; the console goes on
            log.exception("%s failed", job.title)
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            job.finished = time.time()
