"""The `shapes` test task's generator, labels and model: the public surface of
`veil.privacy._shapes` (docs/privacy.md, "Tasks")."""

from veil.privacy._shapes import (
    ATTRIBUTES,
    CLASSES,
    MECHANISM_WEIGHTS,
    SHAPES_SPLIT_LAYER,
    SHAPES_WEIGHTS,
    ShapeParams,
    attributes,
    draw,
    generate,
    load_model,
    moved_pairs,
    probe_images,
    read_split,
    render,
    sample_params,
    shapes_cnn,
    shapes_images,
    task_loss,
)

__all__ = ["ATTRIBUTES", "CLASSES", "MECHANISM_WEIGHTS", "SHAPES_SPLIT_LAYER", "SHAPES_WEIGHTS",
           "ShapeParams", "attributes", "draw", "generate", "load_model", "moved_pairs",
           "probe_images", "read_split", "render", "sample_params", "shapes_cnn",
           "shapes_images", "task_loss"]
