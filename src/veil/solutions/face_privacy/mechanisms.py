"""The face detector's mechanisms (issue 17): the public surface of `_mechanisms`."""

from veil.solutions.face_privacy._mechanisms import (
    NAME,
    NETWORKS,
    faceboxes_layered,
    layered,
    load_mechanism,
    shipped,
    weights_path,
)

__all__ = ["NAME", "NETWORKS", "faceboxes_layered", "layered", "load_mechanism", "shipped",
           "weights_path"]
