"""Versioned data volumes: create, snapshot, clone and restore, on btrfs, reflink or plain copies.

    >>> from veil import data
    >>> data.create_volume("inference-data", size="50Gi")
    >>> data.create_snapshot("inference-data", name="baseline")
    >>> data.clone_volume("inference-data", "experiment-1", snapshot="baseline")
"""

from veil.data._api import (
    Snapshot,
    Volume,
    clone_volume,
    create_snapshot,
    create_volume,
    delete_snapshot,
    delete_volume,
    get_snapshot,
    get_volume,
    list_snapshots,
    list_volumes,
    restore_snapshot,
    snapshot_path,
    stored_bytes,
    timestamp,
    volume_path,
)
from veil.data._doctor import (
    Check,
    DoctorReport,
    doctor,
    pool_create,
    pool_detach,
    pool_grow,
    pool_show,
)
from veil.data._names import format_size, parse_size, validate_name
from veil.data._paths import data_origin, ensure_volume, resolve_path
from veil.data._pool import PoolInfo
from veil.progress import Progress

__all__ = [
    "Check",
    "DoctorReport",
    "PoolInfo",
    "Progress",
    "Snapshot",
    "Volume",
    "clone_volume",
    "create_snapshot",
    "create_volume",
    "data_origin",
    "delete_snapshot",
    "delete_volume",
    "doctor",
    "ensure_volume",
    "format_size",
    "get_snapshot",
    "get_volume",
    "list_snapshots",
    "list_volumes",
    "parse_size",
    "pool_create",
    "pool_detach",
    "pool_grow",
    "pool_show",
    "resolve_path",
    "restore_snapshot",
    "snapshot_path",
    "stored_bytes",
    "timestamp",
    "validate_name",
    "volume_path",
]
