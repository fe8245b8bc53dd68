"""Targets as data: a :class:`Target` names a measured number, a comparison and a limit;
:func:`evaluate_targets` judges every target against a dict of measured numbers.

A measured number is ``None`` when this run did not measure it: the target is then
``met = None`` (not measured), never assumed met.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Mapping, Sequence

from gcnn.validation import check_choice
from repro.markdown import markdown_table

_COMPARISONS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class Target:
    """``name`` is met when ``measured[metric] <op> limit``; ``unit`` says what the number is."""

    name: str
    metric: str
    op: str
    limit: float
    unit: str = ""

    def __post_init__(self) -> None:
        check_choice("op", self.op, list(_COMPARISONS))


@dataclass(frozen=True)
class Measured:
    """A measured number and where it came from (e.g. the worst case's name)."""

    value: float
    where: str = ""


def evaluate_targets(targets: Sequence[Target], measured: Mapping[str, Measured | None]) -> list[dict]:
    """One record per target: ``name``, ``limit`` (text), ``measured`` (number or None),
    ``unit``, ``where`` and ``met`` (True, False, or None when not measured)."""
    records = []
    for target in targets:
        found = measured.get(target.metric)
        met = None if found is None else bool(_COMPARISONS[target.op](found.value, target.limit))
        records.append({"name": target.name, "metric": target.metric,
                        "limit": f"{target.op} {target.limit:.4g}{target.unit}",
                        "measured": None if found is None else found.value, "unit": target.unit,
                        "where": "" if found is None else found.where, "met": met})
    return records


def status(record: Mapping) -> str:
    """``met``, ``missed`` or ``not measured``."""
    return {True: "met", False: "**missed**", None: "not measured"}[record["met"]]


def targets_table(records: Sequence[Mapping]) -> str:
    """The targets as a markdown table (target, limit, measured, status)."""
    def measured(r: Mapping) -> str:
        if r["measured"] is None:
            return "-"
        text = f"{r['measured']:.4g}{r['unit']}"
        return f"{text} ({r['where']})" if r["where"] else text
    return markdown_table(["target", "limit", "measured", "status"],
                          [[r["name"], r["limit"], measured(r), status(r)] for r in records])
