"""Validation of object names, sizes and labels."""

from __future__ import annotations

import re

from veil.errors import InvalidArgument

MAX_NAME = 253  # a Kubernetes object name (DNS subdomain) may be this long
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
    if isinstance(text, int):
        if text <= 0:
            raise InvalidArgument(f"invalid size {text}: must be positive")
        return text
    m = _SIZE_RE.match(text)
    if not m:
        raise InvalidArgument(
            f"invalid size {text!r}: use a number with an optional unit, e.g. 50Gi, 500Mi, 2G"
        )
    number, unit = m.group(1), m.group(2) or ""
    value = int(float(number) * _UNITS[unit])
    if value <= 0:
        raise InvalidArgument(f"invalid size {text!r}: must be positive")
    return value


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
            raise InvalidArgument(f"invalid label {item!r}: use key=value")
        labels[key.strip()] = value.strip()
    return labels
