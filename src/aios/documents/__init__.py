"""Business documents (proposals, invoices, credit notes): validated models and PDF rendering.

A plain package that knows nothing of Temporal: activities build a document model from the
canonical records and call a ``render_*`` function to get the PDF bytes.
"""

from __future__ import annotations

from aios.documents.models import CreditNoteDocument, InvoiceDocument, ProposalDocument
from aios.documents.pdf import (
    PLACEHOLDER,
    clean_text,
    render_credit_note,
    render_invoice,
    render_proposal,
)

__all__ = [
    "PLACEHOLDER",
    "CreditNoteDocument",
    "InvoiceDocument",
    "ProposalDocument",
    "clean_text",
    "render_credit_note",
    "render_invoice",
    "render_proposal",
]
