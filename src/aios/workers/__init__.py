"""Worker assembly: workflows and activities on the task queue, memory on its own task queue
(``<task queue>-memory``) served by the process that owns memory (``aios.workers.memory``)."""

from aios.workers.main import build_worker, run_worker
from aios.workers.services import Services

__all__ = ["Services", "build_worker", "run_worker"]
