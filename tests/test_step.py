"""The one training step (repro/train/step.py): the trainer and the bench run the same function,
and a step the float16 GradScaler skips for inf gradients is no divergence."""
from __future__ import annotations

import pytest
import torch

import models
from repro.bench import training
from repro.train import compose_config, load_config, run
from repro.train import step as step_module
from repro.train import trainer as trainer_module
from repro.train.step import build_train_step, prepare_model, train_step

pytestmark = pytest.mark.usefixtures("one_thread")


def counting(monkeypatch, module, calls: list) -> None:
    """Replace ``module.train_step`` by a wrapper that records each call and runs the real step."""
    def wrapper(*args, **kwargs):
        calls.append(args[0])
        return train_step(*args, **kwargs)
    monkeypatch.setattr(module, "train_step", wrapper)


def test_the_trainer_and_the_bench_run_the_same_step_function(tmp_path, monkeypatch):
    trainer_calls, bench_calls = [], []
    counting(monkeypatch, trainer_module, trainer_calls)
    counting(monkeypatch, step_module, bench_calls)
    run(compose_config([f"data.root={tmp_path / 'data'}", "data.train_size=32", "data.image_size=8", "epochs=1",
                        "batch_size=16", "model.width=0.3", "equivariance_images=4", "robustness=false",
                        "logger=none"]), run_dir=tmp_path / "run")
    assert len(trainer_calls) == 2  # 32 images in batches of 16
    row = training.measure_case(training.TrainCase(("model.width=0.3", "grad_clip=1.0", "schedule=cosine")),
                                torch.device("cpu"), steps=2, warmup=1, batch=4)
    assert len(bench_calls) == 3 and row["optim"]["lr"] == 0.001
    step = bench_calls[0]  # the trainer's pieces: scheduler and clipping included
    assert step.grad_clip == 1.0 and isinstance(step.scheduler, torch.optim.lr_scheduler.LambdaLR)
    assert step.scheduler.last_epoch == 3 and isinstance(step.scaler, torch.amp.GradScaler)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # the skipped step
def test_a_step_the_grad_scaler_skips_is_not_divergence():
    """Scaled gradients overflow (inf), so the scaler skips the update and lowers its scale; the
    float32 loss stays finite, which is what the divergence check reads."""
    torch.manual_seed(0)
    config = load_config({"model": {"width": 0.3}, "grad_clip": 1.0})
    module = models.build_model("rotmnist", "p4", 10, in_channels=1, width=0.3)
    module, train_model, _ = prepare_model(module, torch.device("cpu"), channels_last=False, compiled=False)
    step = build_train_step(config, module, train_model, torch.device("cpu"), steps_per_epoch=1, amp_dtype=None,
                            channels_last=False)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127)
    before = [p.detach().clone() for p in module.parameters()]
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    loss, logits = train_step(step, x, y, 1e6)  # scaled gradients beyond float32's range
    assert torch.isfinite(loss) and logits.shape == (8, 10)
    assert step.scaler.get_scale() < 2.0 ** 127  # the step was skipped ...
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))  # ... and changed nothing
    step.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    train_step(step, x, y, 1e6)
    assert not all(torch.equal(a, b) for a, b in zip(before, module.parameters()))  # negative control
