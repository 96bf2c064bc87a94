"""Adapters to outside systems, each behind a small contract."""

from aios.connectors.calendar import Invite, invite_attachment, kickoff_uid
from aios.connectors.email import (
    Attachment,
    OutgoingEmail,
    SmtpConfig,
    SmtpEmailConnector,
    message_id_for,
)

__all__ = [
    "Attachment",
    "Invite",
    "OutgoingEmail",
    "SmtpConfig",
    "SmtpEmailConnector",
    "invite_attachment",
    "kickoff_uid",
    "message_id_for",
]
