"""Worker assembly: every workflow and activity on one task queue."""

from aios.workers.main import build_worker, run_worker
from aios.workers.services import Services

__all__ = ["Services", "build_worker", "run_worker"]
