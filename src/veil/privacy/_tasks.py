"""The registry of privacy tasks: a model, its data and its metric, by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from veil.errors import NotFound

# Modules that register tasks when imported. veil.privacy never imports a solution by name: a
# solution registered under the `veil.solutions` entry point calls add_provider() when imported,
# and a package may also name its module under the `veil.privacy.tasks` entry point.
_PROVIDERS = ["veil.privacy._shapes"]
ENTRY_POINT_GROUP = "veil.privacy.tasks"
SOLUTIONS_GROUP = "veil.solutions"


def _default_sizes() -> dict[str, int]:
    return {"train": 3000, "test": 1000, "identity_train": 40, "identity_test": 10,
            "pairs": 500}


@dataclass(frozen=True)
class Probes:
    """What a task's generator knows beyond its data set, for the identity-level measures of
    `veil privacy leakage` (veil.privacy._report). The images are generated in memory from
    seeds of their own: labels such as skin tone or identity exist only for generated data.

    units(kind, n, seed) -> iterable (with a length) of (inputs, boxes, labels) batches:
        kind "attributes": `n` images of the generator's usual scenes, labelled with every
        attribute in `attributes`; kind "identity": `n` scenes of each of `identities`
        identities, labelled "identity". `boxes` is None when each image is one unit, else a
        list with one (n_i, 4) tensor of normalised x0, y0, x1, y1 per image (one unit per
        box); `labels` maps a name to one class index per unit.
    pairs(n, seed) -> iterable (with a length) of (inputs A, inputs B) batches: `n` pairs of
        inputs that differ in one thing (`pair_name`), for the two-input bound.
    boxes(data, split) -> one (n_i, 4) tensor per image of `task.images(data, split)`, in its
        order: where the region measure crops (faces), or None for whole images.
    public(data, split) -> what the task's output tells anyone about each image of
        `task.images(data, split)`: a tensor of class indices, or boxes as `boxes` gives them.
    sizes: the full-strength probe sizes ("train", "test": attribute images; "identity_train",
        "identity_test": scenes per identity; "pairs").
    """

    attributes: dict[str, int]
    units: Callable[..., Iterable]
    pairs: Callable[..., Iterable]
    pair_name: str
    identities: int = 0
    boxes: Callable[..., Any] | None = None
    public: Callable[..., Any] | None = None
    public_name: str = "public output"
    sizes: dict[str, int] = field(default_factory=_default_sizes)


@dataclass(frozen=True)
class PrivacyTask:
    """Everything `veil privacy` needs to fit, evaluate, attack and time one model.

    load_model(device) -> SplitModel with trained weights, in eval mode.
    loader(data, split, batch_size, shuffle) -> iterable of (inputs, targets) batches.
    task_loss(tail_output, targets) -> scalar tensor the obfuscator is fitted against.
    score(model, transform, data, split, device) -> the task metric (higher is better), with
        `transform` applied to the activation (None: clean). A score that also takes a
        `progress` keyword gets one (a veil.progress.Progress) to show its phases on.
    images(data, split, batch_size) -> iterable of (inputs, images in [0, 1]) for the attack.
    generate(path, *, seed, sizes, progress) writes a dataset in the task's real on-disk format;
        `sizes` maps the splits "fit", "attack" and "test" to image counts (`sizes` below holds
        the task's defaults), and `progress` (a veil.progress.Progress or None) gets one phase
        counting the images written.
    probes: the generator's labels and pairs for `veil privacy leakage` (None: the ladder only).
    mechanisms: the mechanisms the task ships weights for; load_model(device, mechanism=M)
        loads one other than "noise" (veil.privacy._mechanisms).
    splits maps each role ("fit": what the obfuscator is fitted on, "attack": the attacker's own
        images, "test": what is scored) to the task's name for it, the `split` its loader reads.
    """

    name: str
    description: str
    metric: str
    load_model: Callable[..., Any]
    loader: Callable[..., Iterable]
    task_loss: Callable[..., Any]
    score: Callable[..., float]
    images: Callable[..., Iterable]
    generate: Callable[..., Any] | None = None
    splits: dict[str, str] = field(default_factory=lambda: {
        "fit": "train", "attack": "attack", "test": "test"})
    bench_input: tuple[int, int, int] = (3, 1080, 1920)
    sizes: dict[str, int] = field(default_factory=lambda: {"fit": 4000, "attack": 2000,
                                                           "test": 1000})
    probes: Probes | None = None
    mechanisms: tuple[str, ...] = ("noise",)


_TASKS: dict[str, PrivacyTask] = {}


def register_task(task: PrivacyTask) -> PrivacyTask:
    """Make `task` available to `veil privacy ...` and get_task()."""
    _TASKS[task.name] = task
    return task


def _load_providers() -> None:
    from importlib.metadata import entry_points

    # Solutions first: a registration module keeps its solution as SOLUTION, whose
    # privacy_task names the module registering its task (read by attribute, so veil.privacy
    # never imports veil.solutions); a registration may also call add_provider() itself.
    for ep in entry_points(group=SOLUTIONS_GROUP):
        solution = getattr(importlib.import_module(ep.module), "SOLUTION", None)
        task_module = getattr(solution, "privacy_task", None)
        if task_module:
            add_provider(task_module)
    modules = list(_PROVIDERS)
    modules += [ep.module for ep in entry_points(group=ENTRY_POINT_GROUP)
                if ep.module not in modules]
    for module in modules:
        importlib.import_module(module)


def add_provider(module: str) -> None:
    """Name a module whose import registers tasks; it is imported before tasks are looked up
    (a solution calls this when it registers itself)."""
    if module not in _PROVIDERS:
        _PROVIDERS.append(module)


def get_task(name: str) -> PrivacyTask:
    """The registered task called `name`, or NotFound naming the ones there are."""
    _load_providers()
    if name not in _TASKS:
        raise NotFound(f"no privacy task {name!r}; registered: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def list_tasks() -> list[PrivacyTask]:
    """Every registered task, by name."""
    _load_providers()
    return [_TASKS[n] for n in sorted(_TASKS)]
