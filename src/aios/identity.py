"""Who the business is: the identity its documents and emails carry, and where its clock is.

``BusinessIdentity`` is everything a proposal, an invoice, a credit note or an email says about
the sender: the business name, postal address, tax id, contact address, logo, bank account,
invoice footer, and the time zone every date and time is shown in. It is built from the
settings (``Settings.business_identity``) and handed to the documents and email templates; it
knows nothing of settings itself.

``placeholder`` marks the identity AiOs ships with (operator "Your operator", mail at
``aios.localhost``): a document rendered with it says DRAFT on every page, so a test setup can
never produce a client-ready document by accident.

The helpers below word moments the same way everywhere (documents, emails, the welcome agent):
``format_date`` gives "17 March 2025", ``format_when`` "Monday 17 March 2025 at 10:00 CET
(Europe/Berlin)", in English whatever the machine's locale.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aios.kernel.text import Line, Text

__all__ = [
    "MAX_LOGO_BYTES",
    "MAX_LOGO_SIDE_PX",
    "PLACEHOLDER_DOMAIN",
    "PLACEHOLDER_OPERATOR_NAME",
    "BankAccount",
    "BusinessIdentity",
    "check_logo",
    "format_date",
    "format_when",
    "zone",
    "zone_label",
]

PLACEHOLDER_OPERATOR_NAME = "Your operator"
PLACEHOLDER_DOMAIN = "aios.localhost"
MAX_LOGO_BYTES = 2 * 1024 * 1024
MAX_LOGO_SIDE_PX = 5000

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# --- time zones ---------------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` ("Europe/Berlin", "UTC"); ``ValueError`` if there is none."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{name!r} is not an IANA time zone name (for example 'Europe/Berlin', "
            "'America/New_York' or 'UTC')"
        ) from None


def _local(moment: datetime, tz: tzinfo | None) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; cannot show it in one")
    return moment.astimezone(tz) if tz is not None else moment


def zone_label(moment: datetime) -> str:
    """How the zone of aware ``moment`` is named for a reader: "UTC", "CET (Europe/Berlin)",
    "UTC-03:00 (America/Sao_Paulo)" (where the zone has no letter abbreviation), "UTC+01:00"
    (a bare offset)."""
    offset = moment.utcoffset() or timedelta(0)
    key = getattr(moment.tzinfo, "key", None)
    if key in ("UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu") or (
        key is None and offset == timedelta(0)
    ):
        return "UTC"
    abbreviation = moment.tzname() or ""
    if not abbreviation.isalpha():  # "-03", "+0530": no real abbreviation
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        abbreviation = f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{abbreviation} ({key})" if key else abbreviation


def format_date(moment: datetime, tz: tzinfo | None = None) -> str:
    """``moment``'s date in ``tz`` (default: its own zone): "17 March 2025"."""
    local = _local(moment, tz)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year}"


def format_when(moment: datetime, tz: tzinfo | None = None) -> str:
    """``moment`` in ``tz`` (default: its own zone), the zone named:
    "Monday 17 March 2025 at 10:00 CET (Europe/Berlin)"."""
    local = _local(moment, tz)
    return f"{_WEEKDAYS[local.weekday()]} {format_date(local)} at {local:%H:%M} {zone_label(local)}"


# --- logo ---------------------------------------------------------------------------------------


def check_logo(path: Path) -> Path:
    """``path`` if it is a PNG or JPEG file that fpdf2 can embed, of a sensible size.

    Raises ``ValueError`` saying what is wrong: missing, not a file, too large (over
    ``MAX_LOGO_BYTES`` or ``MAX_LOGO_SIDE_PX`` on a side), not an image, another format.
    """
    from fpdf import FPDF
    from PIL import Image, UnidentifiedImageError

    path = path.expanduser().resolve()
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    size = path.stat().st_size
    if size > MAX_LOGO_BYTES:
        raise ValueError(
            f"{path} is {size / 1024 / 1024:.1f} MB; a logo must be at most "
            f"{MAX_LOGO_BYTES // 1024 // 1024} MB"
        )
    try:
        with Image.open(path) as image:
            kind, (width, height) = image.format, image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ValueError(f"{path} is not a readable PNG or JPEG image") from None
    if kind not in ("PNG", "JPEG"):
        raise ValueError(f"{path} is a {kind} image; the logo must be PNG or JPEG")
    if max(width, height) > MAX_LOGO_SIDE_PX:
        raise ValueError(
            f"{path} is {width}x{height} pixels; a logo must be at most {MAX_LOGO_SIDE_PX} "
            "pixels on each side"
        )
    try:  # what the renderer will do with it
        pdf = FPDF()
        pdf.add_page()
        pdf.image(str(path), x=10, y=10, h=10)
    except Exception as exc:  # fpdf2 and Pillow raise many kinds; all mean "cannot embed"
        raise ValueError(f"{path} cannot be embedded in a PDF ({type(exc).__name__})") from None
    return path


# --- the identity -------------------------------------------------------------------------------


class BankAccount(BaseModel):
    """The account invoices ask to be paid into (all optional; empty means not shown)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    account_name: Line = Field(default="", max_length=200)
    iban: Line = Field(default="", max_length=64)
    bic: Line = Field(default="", max_length=16)
    bank_name: Line = Field(default="", max_length=200)

    def lines(self) -> list[str]:
        """``["Account holder: ...", "IBAN: DE89 3704 ...", ...]``, only what is set."""
        iban = self.iban.replace(" ", "")
        grouped = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        return [
            f"{label}: {value}"
            for label, value in (
                ("Account holder", self.account_name),
                ("IBAN", grouped),
                ("BIC", self.bic),
                ("Bank", self.bank_name),
            )
            if value
        ]


class BusinessIdentity(BaseModel):
    """The sender of every document and email: see the module docstring."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    name: Line = Field(min_length=1, max_length=200)
    address: Text = Field(default="", max_length=1000)
    tax_id: Line = Field(default="", max_length=64)
    email: Line = Field(default="", max_length=254)
    logo: Path | None = None
    bank: BankAccount = Field(default_factory=BankAccount)
    footer: Text = Field(default="", max_length=1000)
    timezone: str = "UTC"
    placeholder: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return zone(value).key

    @field_validator("logo")
    @classmethod
    def _embeddable_logo(cls, value: Path | None) -> Path | None:
        return None if value is None else check_logo(value)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)

    @property
    def address_lines(self) -> list[str]:
        return [line.strip() for line in self.address.splitlines() if line.strip()]

    @property
    def footer_lines(self) -> list[str]:
        return [line.strip() for line in self.footer.splitlines() if line.strip()]
