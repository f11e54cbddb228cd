"""Paths inside volumes, and where a volume's content came from: what a job needs to read its
data from a volume and record the data's lineage."""

from __future__ import annotations

from pathlib import Path

from veil.errors import InvalidArgument, NotFound


def resolve_path(path: str | Path, volume: str | None, *, home: Path | None = None) -> Path:
    """`path` itself, or with `volume` that path inside the volume (as a job on Kubernetes
    reads /data/... from its PVC). An absolute path must lie inside the volume; nothing may
    lead outside it."""
    if volume is None:
        return Path(path)
    from veil.data._api import volume_path

    root = volume_path(volume, home=home)
    rel = Path(path)
    if rel.is_absolute():
        try:
            rel = rel.relative_to(root)
        except ValueError:
            raise InvalidArgument(f"{path} is not inside volume {volume!r} ({root}); give a "
                                  "path relative to the volume") from None
    out = root / rel
    real, real_root = out.resolve(), root.resolve()
    if real != real_root and real_root not in real.parents:
        raise InvalidArgument(f"{path} leads outside volume {volume!r}")
    return out


def ensure_volume(name: str, *, labels: dict[str, str] | None = None,
                  home: Path | None = None):
    """The volume `name`, created (empty, with `labels`) if it does not exist."""
    from veil.data._api import create_volume, get_volume
    from veil.data._names import validate_name

    validate_name(name, "volume name")
    try:
        return get_volume(name, home=home)
    except NotFound:
        return create_volume(name, labels=labels, home=home)


def data_origin(volume: str, *, home: Path | None = None) -> tuple[str | None, str | None]:
    """(snapshot, its volume) that `volume`'s content came from: the last snapshot restored
    into it, else the snapshot it was cloned from (None, None: neither, or deleted since)."""
    from veil.data._api import get_volume

    v = get_volume(volume, home=home)
    if v.restored_from:
        return v.restored_from, volume
    if v.origin_snapshot and not v.origin_snapshot.endswith("(deleted)"):
        return v.origin_snapshot, v.origin_volume
    return None, None
