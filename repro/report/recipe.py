"""Which runs the report averages, how rows that differ are labelled, and whether a row is the
paper's recipe.

Runs whose identity items (:func:`repro.train.identity.identity_items`: every key that can change
the numbers) differ in ``seed`` alone form one *cell* and are averaged; nothing else is. A cell's
place in the table is its network, group, data, augmentation, training-set size and budget; any
other key in which it differs from the most common recipe of its network, augmentation and data is
its *variant* label (``optim.lr=0.01``), so an ablation gets its own row.
"""
from __future__ import annotations

import functools
import json
from collections import Counter
from typing import Any, Mapping

import pandas as pd

from repro.data.cifar_format import CIFAR_FORMATS, cifar_layout
from repro.train.identity import identity_diff, identity_hash, identity_items

from .values import group_rows, is_missing

# Keys shown by the table's layout (row, column, section) rather than in a variant label;
# the budget keys are shown in the Budget column.
LAYOUT_KEYS = ("seed", "model.name", "group.name", "augment.name", "data.name", "data.train_size")
BUDGET_KEYS = ("epochs", "steps_per_epoch")


def recipe_items(items: Mapping[str, Any]) -> dict[str, Any]:
    """The items without ``seed``: what runs must share to be averaged."""
    return {key: value for key, value in items.items() if key != "seed"}


def budget_label(items: Mapping[str, Any]) -> str:
    """``30 epochs``, or ``30 epochs x 8 steps`` when the config fixes the steps per epoch."""
    epochs, steps = items.get("epochs"), items.get("steps_per_epoch")
    label = "? epochs" if epochs is None else f"{epochs} epoch" + ("" if epochs == 1 else "s")
    return label + ("" if steps is None else f" x {steps} steps")


def data_label(data: Any, data_format: Any = None) -> str:
    """Display name of a data set: a CIFAR-format folder as ``folder (cifar100 format, 100 classes)``."""
    if data != "cifar_folder":
        return str(data)
    classes = cifar_layout(data_format).num_classes if data_format in CIFAR_FORMATS else None
    return f"folder ({data_format} format" + (f", {classes} classes)" if classes else ")")


def format_value(value: Any) -> str:
    """A config value as written on a command line: ``0.01``, ``null``, ``[200, 250]``."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


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


def _disambiguate(cells: pd.DataFrame, labels: dict[str, str], items: dict[str, dict]) -> None:
    """Cells that would share a table slot get the keys that tell them apart appended."""
    slot = ("data_label", "model", "group", "augment", "train_size", "budget", "label")
    for same_slot in group_rows(cells.assign(label=cells["recipe"].map(labels)), slot).values():
        recipes = list(same_slot["recipe"])
        if len(recipes) < 2:
            continue
        shown = [_variant_items(items[r]) for r in recipes]  # one slot shares its budget label, so its budget keys
        differ = sorted({k for a in shown for b in shown for k in identity_diff(a, b)})
        for recipe, its in zip(recipes, shown):
            labels[recipe] = ", ".join(filter(None, [labels[recipe], *_describe(its, differ)]))


def label_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (with identity ``items``) plus ``recipe`` (cell id), ``budget``, ``data_label`` and
    ``variant`` (empty for the most common recipe of each network x augmentation x data set)."""
    runs = runs.copy()
    runs["recipe"] = [identity_hash(recipe_items(items)) for items in runs["items"]]
    runs["budget"] = [budget_label(items) for items in runs["items"]]
    runs["data_label"] = [data_label(d, f) for d, f in zip(runs["data"], runs["data_format"])]
    items = dict(zip(runs["recipe"], runs["items"]))
    labels: dict[str, str] = {}
    for _, family in runs.groupby(["data_label", "model", "augment"], dropna=False, sort=False):
        shown = [_variant_items(items[recipe]) for recipe in family["recipe"]]
        ids = [identity_hash(its) for its in shown]
        runs_per_id = Counter(ids)
        base = shown[ids.index(min(runs_per_id, key=lambda v: (-runs_per_id[v], v)))]  # most runs; ties by id
        for recipe, its in zip(family["recipe"], shown):
            labels[recipe] = ", ".join(_describe(its, [k for k in identity_diff(its, base) if k in its]))
    _disambiguate(runs.drop_duplicates("recipe"), labels, items)
    runs["variant"] = runs["recipe"].map(labels)
    return runs


@functools.cache
def paper_preset_items(preset: str, group: str, augment: str, data: str) -> dict[str, Any]:
    """Identity items of ``experiment=<preset>`` composed for this group, augmentation and data set
    (the recipe ``make reproduce-table`` trains); cached, so read-only."""
    from repro.train import compose_config, load_config, to_dict
    overrides = [f"experiment={preset}", f"group={group}", f"augment={augment}", f"data={data}"]
    return identity_items(to_dict(load_config(compose_config(overrides))))


def paper_match(items: Mapping[str, Any], preset: Any, group: str, augment: str, data: str) -> tuple[str, str]:
    """``(keys, described)``: the keys (seed aside) in which a cell's recipe differs from the paper
    preset, and their values (``optim.lr=0.01 (paper 0.05)``); both empty when it is the preset."""
    if is_missing(preset) or not preset:
        return "(no paper preset)", "the reference row names no preset"
    try:
        paper = recipe_items(paper_preset_items(preset, group, augment, data))
    except Exception as err:  # noqa: BLE001 - any failure to compose is reported as such
        return "(preset unavailable)", f"paper preset experiment={preset} cannot be composed ({err})"
    ours = recipe_items(items)
    keys = list(identity_diff(ours, paper))
    return ", ".join(keys), "; ".join(f"{key}={format_value(ours.get(key, '–'))} "
                                      f"(paper {format_value(paper.get(key, '–'))})" for key in keys)
