"""The newsletter's messages: an issue (Markdown to plain text and HTML) and the confirmation
email of the double opt-in.

The issue's Markdown is rendered with markdown-it-py in CommonMark mode with raw HTML turned
off, so text in a post can never become markup; the subscriber's name is escaped. Pure.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass

from markdown_it import MarkdownIt

__all__ = ["ConfirmationMessage", "IssueMessage", "confirmation", "issue_html", "render_issue"]


@dataclass(frozen=True)
class IssueMessage:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class ConfirmationMessage:
    subject: str
    text: str


@functools.cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def issue_html(markdown: str) -> str:
    """The issue body as HTML: raw HTML in the Markdown is shown as text, not obeyed."""
    return _markdown().render(markdown)


def render_issue(
    *, subject: str, markdown: str, body_html: str, name: str, sender: str, unsubscribe_url: str
) -> IssueMessage:
    """One subscriber's copy: a greeting with their (escaped) name, the body, and the
    unsubscribe link. ``body_html`` is ``issue_html(markdown)``, rendered once per batch."""
    greeting = f"Hello {name}," if name else "Hello,"
    footer = (
        f"You receive this because you subscribed to {sender}'s newsletter.\n"
        f"Unsubscribe with one click: {unsubscribe_url}"
    )
    text = f"{greeting}\n\n{markdown.strip()}\n\n-- \n{footer}\n"
    url = html.escape(unsubscribe_url, quote=True)
    page = (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head><body>\n"
        f"<p>{html.escape(greeting)}</p>\n{body_html}\n<hr>\n"
        f"<p>You receive this because you subscribed to {html.escape(sender)}'s newsletter. "
        f'<a href="{url}">Unsubscribe</a> with one click.</p>\n</body></html>\n'
    )
    return IssueMessage(subject=subject, text=text, html=page)


def confirmation(*, name: str, sender: str, confirm_url: str) -> ConfirmationMessage:
    """The double opt-in email: nothing is sent to the address until this link is followed."""
    greeting = f"Hello {name}," if name else "Hello,"
    text = (
        f"{greeting}\n\n"
        f"please confirm that you want to receive {sender}'s newsletter by opening this link "
        f"and pressing Confirm:\n\n{confirm_url}\n\n"
        "If you did not ask for it, ignore this email: you will receive nothing more.\n"
    )
    return ConfirmationMessage(subject="Please confirm your subscription", text=text)
