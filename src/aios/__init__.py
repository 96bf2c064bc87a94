"""AiOs: the operating layer of a one-person company.

Business processes run as durable Temporal workflows (``aios.workflows``) over thin activities
(``aios.activities``) that call plain packages: the kernel (PostgreSQL records and event log),
agents, connectors and memory (Qdrant).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
