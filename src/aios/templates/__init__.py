"""Email wording as Jinja2 templates the operator can edit (see ``aios.templates.emails``).

The defaults ship in this package under ``email/``; ``AIOS_TEMPLATES_DIR`` names a folder
whose files of the same names take their place, and ``export_defaults(folder)`` copies the
defaults there to start from.
"""

from __future__ import annotations

from aios.templates.emails import (
    EMAILS,
    EmailTemplates,
    ExportResult,
    GateReminderEmail,
    InvoiceCancelledEmail,
    InvoiceEmail,
    InvoiceReminderEmail,
    KickoffCancelledEmail,
    ProposalEmail,
    ProposalWithdrawnEmail,
    RenderedEmail,
    WelcomeEmail,
    export_defaults,
    template_path,
)

__all__ = [
    "EMAILS",
    "EmailTemplates",
    "ExportResult",
    "GateReminderEmail",
    "InvoiceCancelledEmail",
    "InvoiceEmail",
    "InvoiceReminderEmail",
    "KickoffCancelledEmail",
    "ProposalEmail",
    "ProposalWithdrawnEmail",
    "RenderedEmail",
    "WelcomeEmail",
    "export_defaults",
    "template_path",
]
