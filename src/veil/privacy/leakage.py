"""Identity-level leakage measures and the report that runs them on a task (issue 17): the
public surface of `veil.privacy._leakage` and `veil.privacy._report` (docs/privacy.md,
"Identity-level leakage")."""

from veil.privacy._leakage import (
    GRID_SIZES,
    Ladder,
    Probe,
    ProbeScore,
    RegionScore,
    Rung,
    Units,
    WindowDecoder,
    boxes_guess,
    class_mean_guess,
    colour_grid,
    crop,
    gaussian_distance,
    ladder,
    laplace_optimal_test,
    monte_carlo_gaussian_test,
    place_on,
    region_score,
    train_probe,
    train_region_decoder,
    two_input_bound,
    windows,
)
from veil.privacy._report import (
    PRESETS,
    LeakageResult,
    TwoInput,
    Utility,
    clear_cache,
    describe,
    leakage,
)
from veil.privacy._report import _plain as as_dict

__all__ = [
    "GRID_SIZES", "PRESETS", "Ladder", "LeakageResult", "Probe", "ProbeScore", "RegionScore",
    "Rung", "TwoInput", "Units", "Utility", "WindowDecoder", "as_dict", "boxes_guess",
    "class_mean_guess", "clear_cache", "colour_grid", "crop", "describe", "gaussian_distance",
    "ladder", "laplace_optimal_test", "leakage", "monte_carlo_gaussian_test", "place_on",
    "region_score", "train_probe", "train_region_decoder", "two_input_bound", "windows",
]
