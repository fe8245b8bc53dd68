"""Which runs the report averages, how rows that differ are labelled, and whether a
row is the paper's recipe.

Every run has identity items (:func:`repro.train.identity.identity_items` of its
resolved config: every key that can change its numbers). Runs whose items differ in
``seed`` alone form one *cell* and are averaged; nothing else is. A cell's place in
the table is its network, group, data, augmentation, training-set size and budget;
any other key in which it differs from the most common recipe of its network,
augmentation and data becomes its *variant* label (``optim.lr=0.01``), so an
ablation gets its own row instead of being averaged in or dropped.
"""
from __future__ import annotations

import functools
import json
import math
from typing import Any, Mapping

import pandas as pd

from repro.train.identity import identity_hash, identity_items

__all__ = [
    "LAYOUT_KEYS", "BUDGET_KEYS", "run_items", "recipe_items", "recipe_id", "budget_label", "data_label",
    "format_value", "differing_keys", "short_difference", "label_cells", "paper_preset_items",
    "paper_difference",
]

# Keys shown by the table's layout (row, column, section) rather than in a variant label;
# the budget keys are shown in the Budget column.
LAYOUT_KEYS = ("seed", "model.name", "group.name", "augment.name", "data.name", "data.train_size")
CIFAR_FORMAT_CLASSES = {"cifar10": 10, "cifar100": 100}
# Fields of result.json that stand in for the config of runs that predate stored configs.
LEGACY_FIELDS = {"model.name": "model", "group.name": "group", "augment.name": "augment",
                 "data.name": "data", "data.train_size": "train_size", "seed": "seed", "epochs": "epochs"}


def _name_of(value: Any) -> Any:
    return value.get("name") if isinstance(value, dict) else value


def run_items(result: Mapping[str, Any]) -> dict[str, Any]:
    """Identity items of a run: from its stored resolved ``config``, or, for a result
    without one, from its model/group/augment/data/train_size/seed/epochs fields."""
    config = result.get("config")
    if isinstance(config, Mapping) and config:
        return identity_items(config)
    return {key: _name_of(result.get(field)) for key, field in LEGACY_FIELDS.items()}


def recipe_items(items: Mapping[str, Any]) -> dict[str, Any]:
    """The items without ``seed``: what runs must share to be averaged."""
    return {key: value for key, value in items.items() if key != "seed"}


def recipe_id(items: Mapping[str, Any]) -> str:
    """Short hash of :func:`recipe_items` (the same for every seed of one experiment)."""
    return identity_hash(recipe_items(items))


BUDGET_KEYS = ("epochs", "steps_per_epoch")


def budget_label(items: Mapping[str, Any]) -> str:
    """``30 epochs``, or ``30 epochs x 8 steps`` when the config fixes the optimiser
    steps per epoch (the equal-step protocol of a data-efficiency sweep)."""
    epochs, steps = items.get("epochs"), items.get("steps_per_epoch")
    label = "? epochs" if epochs is None else f"{epochs} epoch" + ("" if epochs == 1 else "s")
    return label + ("" if steps is None else f" x {steps} steps")


def data_label(data: Any, data_format: Any = None) -> str:
    """Display name of a data set; a CIFAR-format folder is named by its format and
    number of classes (``folder (cifar100 format, 100 classes)``)."""
    if data != "cifar_folder":
        return str(data)
    classes = CIFAR_FORMAT_CLASSES.get(data_format)
    return f"folder ({data_format} format" + (f", {classes} classes)" if classes else ")")


def format_value(value: Any) -> str:
    """A config value as written on a command line: ``0.01``, ``null``, ``[200, 250]``."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


_ABSENT = object()


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Sorted keys whose values differ between ``a`` and ``b`` (a key absent from one differs)."""
    return sorted(k for k in set(a) | set(b) if a.get(k, _ABSENT) != b.get(k, _ABSENT))


def short_difference(keys: list[str], limit: int = 3) -> str:
    """``optim.lr, epochs, data.preprocess +2 more``."""
    named = ", ".join(keys[:limit])
    return named + (f" +{len(keys) - limit} more" if len(keys) > limit else "")


def _variant_items(items: Mapping[str, Any]) -> dict[str, Any]:
    hidden = {*LAYOUT_KEYS, *BUDGET_KEYS}
    if items.get("data.name") == "cifar_folder":
        hidden.add("data.format")  # shown in the data set's name
    return {key: value for key, value in items.items() if key not in hidden}


def _describe(items: Mapping[str, Any], keys: list[str]) -> list[str]:
    return [f"{key}={format_value(items[key]) if key in items else '–'}" for key in keys]


def _family_labels(variants: dict[str, dict], weights: dict[str, int]) -> dict[str, str]:
    """Label each variant by the keys where it differs from the family's most common one."""
    base_id = min(variants, key=lambda v: (-weights[v], v))  # most runs; ties by id
    base = variants[base_id]
    return {vid: ", ".join(_describe(items, [k for k in differing_keys(items, base) if k in items]))
            for vid, items in variants.items()}


def _disambiguate(cells: pd.DataFrame, labels: dict[str, str], items: dict[str, dict]) -> None:
    """Cells that would share a table slot get the keys that tell them apart appended."""
    slot = ["data_label", "model", "group", "augment", "train_size", "budget"]
    keys = [tuple(None if _missing(v) else v for v in row) + (labels[r],)
            for r, row in zip(cells["recipe"], cells[slot].itertuples(index=False, name=None))]
    by_slot: dict[tuple, list[str]] = {}
    for key, recipe in zip(keys, cells["recipe"]):
        by_slot.setdefault(key, []).append(recipe)
    for recipes in by_slot.values():
        if len(recipes) < 2:
            continue
        shown = [_variant_items(items[r]) | {k: items[r][k] for k in BUDGET_KEYS if k in items[r]}
                 for r in recipes]
        differ = sorted({k for a in shown for b in shown for k in differing_keys(a, b)})
        for recipe, its in zip(recipes, shown):
            labels[recipe] = ", ".join(filter(None, [labels[recipe], *_describe(its, differ)]))


def label_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (with an ``items`` column of identity items) plus ``recipe`` (cell id),
    ``budget``, ``data_label`` and ``variant`` (empty for the most common recipe of each
    network x augmentation x data set, else the keys that differ: ``optim.lr=0.01``)."""
    runs = runs.copy()
    runs["recipe"] = [recipe_id(items) for items in runs["items"]]
    runs["budget"] = [budget_label(items) for items in runs["items"]]
    runs["data_label"] = [data_label(d, f) for d, f in zip(runs["data"], runs["data_format"])]
    items = dict(zip(runs["recipe"], runs["items"]))
    labels: dict[str, str] = {}
    for _, family in runs.groupby(["data_label", "model", "augment"], dropna=False, sort=False):
        variants: dict[str, dict] = {}
        weights: dict[str, int] = {}
        variant_of = {}
        for recipe in family["recipe"]:
            its = _variant_items(items[recipe])
            vid = identity_hash(its)
            variants[vid], variant_of[recipe] = its, vid
            weights[vid] = weights.get(vid, 0) + 1
        family_labels = _family_labels(variants, weights)
        labels.update({recipe: family_labels[vid] for recipe, vid in variant_of.items()})
    cells = runs.drop_duplicates("recipe")
    _disambiguate(cells, labels, items)
    runs["variant"] = runs["recipe"].map(labels)
    return runs


@functools.lru_cache(maxsize=None)
def _preset_items_cached(preset: str, group: str, augment: str, data: str) -> tuple:
    from repro.train import compose_config, load_config, to_dict
    config = to_dict(load_config(compose_config([f"experiment={preset}", f"group={group}",
                                                 f"augment={augment}", f"data={data}"])))
    return tuple(identity_items(config).items())


def paper_preset_items(preset: str, group: str, augment: str, data: str) -> dict[str, Any]:
    """Identity items of the paper preset ``experiment=<preset>`` composed for this group,
    augmentation and data set (the recipe ``make reproduce-table`` trains)."""
    return dict(_preset_items_cached(preset, group, augment, data))


def paper_difference(items: Mapping[str, Any], preset: str, group: str, augment: str,
                     data: str) -> dict[str, tuple[Any, Any]]:
    """``{key: (ours, paper)}`` for every key (seed aside) in which a cell's recipe differs
    from the paper preset (``–`` for an absent key); raises ValueError naming the preset
    when it cannot be composed."""
    try:
        preset_items = paper_preset_items(preset, group, augment, data)
    except Exception as err:  # noqa: BLE001 - any failure to compose is reported as such
        raise ValueError(f"paper preset experiment={preset} cannot be composed ({err})") from err
    ours, paper = recipe_items(items), recipe_items(preset_items)
    return {key: (ours.get(key, "–"), paper.get(key, "–")) for key in differing_keys(ours, paper)}
