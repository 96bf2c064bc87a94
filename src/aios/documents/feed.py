"""The public side of a published post: its static HTML page and the site's Atom feed.

Both are rendered from the stored versions (``PublicPost``) and written atomically: the text
goes to a temporary file in the same folder, is flushed to disk, then replaces the old file
with ``os.replace``, so a reader (a web server, a feed reader) sees the old file or the new
one, never half of one. Markdown is rendered with ``markdown-it-py`` (CommonMark) with raw HTML
disabled, so a post cannot inject markup. Memory citations (``[mem:<id>]``) are the operator's
sources, not the reader's: they are left out of the public page and feed.

Layout under the site folder: ``posts/<post-id>.html`` per post and ``feed.xml``.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from pydantic import BaseModel

__all__ = [
    "FEED_FILE",
    "PublicPost",
    "SiteInfo",
    "atomic_write",
    "page_path",
    "public_markdown",
    "render_feed",
    "render_markdown",
    "render_page",
    "write_site",
]

FEED_FILE = "feed.xml"
ATOM = "http://www.w3.org/2005/Atom"
_CITATION = re.compile(r"\s?\[mem:[0-9A-Za-z-]{1,64}\]")
_SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


class SiteInfo(BaseModel):
    title: str
    author: str
    base_url: str = ""  # absolute links in the feed when set (https://example.com/blog)


class PublicPost(BaseModel):
    post_id: str
    version: int
    title: str
    summary: str
    markdown: str
    published_at: datetime


def public_markdown(markdown: str) -> str:
    """``markdown`` without its memory citations."""
    return _CITATION.sub("", markdown)


def render_markdown(markdown: str, *, public: bool = True) -> str:
    """``markdown`` as HTML (CommonMark, raw HTML escaped); ``public`` leaves out citations."""
    from markdown_it import MarkdownIt

    text = public_markdown(markdown) if public else markdown
    return str(MarkdownIt("commonmark", {"html": False}).render(text))


def page_path(folder: Path, post_id: str) -> Path:
    if not _SAFE_ID.match(post_id):
        raise ValueError(f"post_id: {post_id!r} cannot name a file (a-z, 0-9 and -)")
    return folder / "posts" / f"{post_id}.html"


def _link(site: SiteInfo, post_id: str) -> str:
    relative = f"posts/{post_id}.html"
    return f"{site.base_url.rstrip('/')}/{relative}" if site.base_url else relative


def render_page(post: PublicPost, site: SiteInfo) -> str:
    """The post as a standalone HTML page."""
    e = html.escape
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e(post.title)} | {e(site.title)}</title>\n"
        f'<meta name="description" content="{e(post.summary)}">\n'
        f'<link rel="alternate" type="application/atom+xml" href="../{FEED_FILE}">\n'
        "</head>\n<body>\n<article>\n"
        f"<header><h1>{e(post.title)}</h1>\n"
        f'<p><time datetime="{post.published_at.isoformat()}">'
        f"{post.published_at:%d %B %Y}</time> by {e(site.author)}</p>\n"
        f"<p><em>{e(post.summary)}</em></p></header>\n"
        f"{render_markdown(post.markdown)}"
        "</article>\n</body>\n</html>\n"
    )


def render_feed(posts: list[PublicPost], site: SiteInfo) -> str:
    """The Atom feed (RFC 4287) of ``posts``, newest first."""
    ET.register_namespace("", ATOM)
    ordered = sorted(posts, key=lambda p: (p.published_at, p.post_id), reverse=True)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = site.title
    ET.SubElement(feed, f"{{{ATOM}}}id").text = site.base_url or f"urn:aios:site:{site.title}"
    updated = ordered[0].published_at if ordered else datetime(1970, 1, 1).astimezone()
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = updated.isoformat()
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = site.author
    for post in ordered:
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}title").text = post.title
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"urn:aios:post:{post.post_id}"
        ET.SubElement(entry, f"{{{ATOM}}}link", href=_link(site, post.post_id))
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = post.published_at.isoformat()
        ET.SubElement(entry, f"{{{ATOM}}}published").text = post.published_at.isoformat()
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = post.summary
        content = ET.SubElement(entry, f"{{{ATOM}}}content", type="html")
        content.text = render_markdown(post.markdown)
    body = ET.tostring(feed, encoding="unicode")
    return f'<?xml version="1.0" encoding="utf-8"?>\n{body}\n'


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_site(
    folder: Path, post: PublicPost, published: list[PublicPost], site: SiteInfo
) -> tuple[Path, Path]:
    """Write ``post``'s page and the feed of ``published`` (which includes it); returns both
    paths. Writing the same post again gives the same files."""
    page = page_path(folder, post.post_id)
    atomic_write(page, render_page(post, site))
    feed = folder / FEED_FILE
    others = [p for p in published if p.post_id != post.post_id]
    atomic_write(feed, render_feed([post, *others], site))
    return page, feed
