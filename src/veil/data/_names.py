"""Validation of object names, sizes and labels."""

from __future__ import annotations

import re
from fractions import Fraction

from veil.errors import InvalidArgument

MAX_NAME = 253  # a Kubernetes object name (DNS subdomain) may be this long
# The largest size a Linux file (off_t) or veil's metadata (SQLite INTEGER) can hold: 8Ei - 1.
MAX_SIZE = 2**63 - 1
_MAX_SIZE_DIGITS = 20  # more digits than this is past MAX_SIZE whatever the unit
MAX_LABEL_KEY = 253
MAX_LABEL_VALUE = 4096
_NAME_RE = re.compile(r"^[a-z0-9._-]+$")

# Kubernetes resource quantities, as a user writes `--size 50Gi` for a PVC.
_UNITS = {
    "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?\s*$")


def validate_name(name: str, kind: str = "name") -> str:
    """Return ``name`` if it is a valid volume or snapshot name, else raise InvalidArgument."""
    if not isinstance(name, str) or name == "":
        raise InvalidArgument(f"invalid {kind}: it is empty")
    if name in (".", ".."):
        raise InvalidArgument(f"invalid {kind} {name!r}: '.' and '..' are not names")
    if len(name) > MAX_NAME:
        raise InvalidArgument(
            f"invalid {kind}: {len(name)} characters, at most {MAX_NAME} are allowed"
        )
    if "/" in name:
        raise InvalidArgument(f"invalid {kind} {name!r}: '/' is not allowed")
    if not _NAME_RE.match(name):
        bad = sorted({c for c in name if not re.match(r"[a-z0-9._-]", c)})
        raise InvalidArgument(
            f"invalid {kind} {name!r}: character(s) {''.join(bad)!r} not allowed; "
            "use lower-case letters, digits, '.', '_' and '-'"
        )
    return name


def parse_size(text: str | int | None) -> int | None:
    """Parse a size such as ``50Gi``, ``500M`` or ``1024`` (bytes) into bytes; None stays None."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise InvalidArgument(f"invalid size {text}: must be positive")
        if text > MAX_SIZE:
            raise InvalidArgument(f"invalid size {text}: {_TOO_LARGE}")
        return text
    if not isinstance(text, str):
        raise InvalidArgument(f"invalid size {text!r}: give a number of bytes or a text like 50Gi")
    m = _SIZE_RE.match(text)
    if not m:
        shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
        raise InvalidArgument(
            f"invalid size {shown!r}: use a number with an optional unit, e.g. 50Gi, 500Mi, 2G"
        )
    number, unit = m.group(1), m.group(2) or ""
    whole = number.partition(".")[0].lstrip("0")
    if len(whole) > _MAX_SIZE_DIGITS:
        raise InvalidArgument(f"invalid size ({len(whole)} digits): {_TOO_LARGE}")
    value = int(Fraction(number) * _UNITS[unit])  # exact: no float rounding or overflow
    if value <= 0:
        raise InvalidArgument(f"invalid size {text!r}: must be at least 1 byte")
    if value > MAX_SIZE:
        raise InvalidArgument(f"invalid size {text!r}: {_TOO_LARGE}")
    return value


_TOO_LARGE = ("must be less than 8Ei (2^63 bytes, the most a Linux file or veil's metadata can "
              "hold)")


def format_size(n: int | None) -> str:
    """Render bytes in binary units (``1.5Gi``); None renders as ``-``."""
    if n is None:
        return "-"
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi"):
        if abs(n) < 1024 or unit == "Pi":
            return f"{n}{unit or 'B'}" if unit == "" else f"{n:.1f}{unit}".replace(".0", "")
        n /= 1024
    raise AssertionError("unreachable")


def parse_labels(items: list[str] | None) -> dict[str, str]:
    """Parse ``key=value`` strings into a dict."""
    labels: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            shown = item if len(item) <= 60 else f"{item[:60]}..."
            raise InvalidArgument(f"invalid label {shown!r}: use key=value")
        labels[key.strip()] = value.strip()
    return check_labels(labels)


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Return ``labels`` if every key and value can be stored and shown on one line."""
    for key, value in labels.items():
        if len(key) > MAX_LABEL_KEY:
            raise InvalidArgument(f"invalid label key ({len(key)} characters): at most "
                                  f"{MAX_LABEL_KEY} are allowed")
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidArgument(f"invalid value of label {key!r} ({len(value)} characters): "
                                  f"at most {MAX_LABEL_VALUE} are allowed")
        for what, text in (("key", key), ("value", value)):
            if not text.isprintable():
                raise InvalidArgument(f"invalid label {what} {text[:60]!r}: control characters "
                                      "(newlines, tabs, ...) are not allowed")
    return labels
