"""The tolerant readers of a run's record (repro/train/run_folder.py): result.json and metrics.jsonl."""
from __future__ import annotations

import json

import pytest

from repro.train.run_folder import (METRICS, RESULT, RESULT_REQUIRED_KEYS, RunFileWarning, load_metrics,
                                    load_result)


def finished_result() -> dict:
    return {**{key: 0 for key in RESULT_REQUIRED_KEYS}, "status": "finished", "config": {"seed": 0}}


def test_load_result_reads_any_status_and_none_when_absent(tmp_path):
    assert load_result(tmp_path) is None
    for result in (finished_result(), {"status": "diverged", "epoch": 3, "step": 17}):
        (tmp_path / RESULT).write_text(json.dumps(result))
        assert load_result(tmp_path) == result


@pytest.mark.parametrize("text, problem", [('{"status": "finished", "model": ', r"corrupt result\.json \(Expecting"),
                                           ("[1, 2]", r"corrupt result\.json \(not a JSON object\)"),
                                           ('{"status": "finished"}', r"result\.json lacks keys \['model', "),
                                           (b"\xff\xfe", "corrupt result.json")])
def test_a_corrupt_result_is_none_with_one_warning(tmp_path, text, problem):
    (tmp_path / RESULT).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.warns(RunFileWarning, match=problem) as caught:
        assert load_result(tmp_path) is None
    assert len(caught) == 1 and caught[0].message.path == tmp_path / RESULT


def test_load_metrics_skips_a_truncated_last_line_and_keeps_the_last_copy_of_an_epoch(tmp_path):
    assert load_metrics(tmp_path) == []
    rows = [{"epoch": 1, "test_error": 9.0}, {"epoch": 2, "train_loss": 1.0}, {"epoch": 1, "test_error": 8.0}]
    (tmp_path / METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows) + '\n{"epoch": 3, "test_e')
    with pytest.warns(RunFileWarning, match=r"metrics\.jsonl: skipped unparseable line\(s\) \[5\]"):
        assert load_metrics(tmp_path) == [{"epoch": 1, "test_error": 8.0}, {"epoch": 2, "train_loss": 1.0}]


def test_a_line_without_an_integer_epoch_is_skipped(tmp_path):
    (tmp_path / METRICS).write_text('{"epoch": "1"}\n[]\n{"epoch": 2}\n')
    with pytest.warns(RunFileWarning, match=r"\[1, 2\]"):
        assert load_metrics(tmp_path) == [{"epoch": 2}]
