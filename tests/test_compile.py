"""torch.compile: the G-layers trace as one graph (no breaks) and compiled models match eager.

Fast tests trace with dynamo and run the ``eager`` / ``aot_eager`` backends
(no code generation); the inductor compile of every model takes minutes per
model on a 2-core CPU and is marked slow.
"""
from __future__ import annotations

import pytest
import torch

import gcnn
import models
from repro.bench.compile_check import check_layers, check_models, compile_matches_eager, graph_breaks, layer_modules

ALL_MODELS = [(arch, group) for arch in models.list_models() for group in gcnn.GROUP_NAMES]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_g_layers_trace_without_graph_breaks(group) -> None:
    rows = check_layers([group])
    assert len(rows) == 2 * len(layer_modules(group))
    for row in rows:
        assert (row["graphs"], row["graph_breaks"]) == (1, 0), row


def test_graph_breaks_counts_a_break() -> None:
    """The checker itself can fail: an explicit graph break is counted."""
    class Breaking(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + 1
            torch._dynamo.graph_break()
            return x * 2
    assert graph_breaks(Breaking(), torch.randn(2))["graph_breaks"] == 1


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_compiled_group_conv_matches_eager_in_eval_and_follows_weight_edits(group) -> None:
    torch.manual_seed(0)
    layer = gcnn.GroupConv2d(3, 4, 3, group, padding=1).eval()
    x = torch.randn(2, 3, layer.group.order, 7, 7)
    assert compile_matches_eager(layer, x, backend="eager")["ok"]
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    with torch.no_grad():
        before = compiled(x)
        layer.weight.mul_(-1.5)              # the compiled eval path must not serve a stale bank
        after = compiled(x)
        reference = torch.nn.functional.conv2d(x.flatten(1, 2), *layer.expanded_weight(), padding=1)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after.flatten(1, 2), reference, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [gcnn.LiftingConv2d, gcnn.GroupConv2d])
def test_compiled_train_step_gradients_match_eager(cls) -> None:
    torch.manual_seed(0)
    layer = cls(3, 4, 3, "p4m", padding=1)
    x = torch.randn(2, 3, 9, 9) if cls is gcnn.LiftingConv2d else torch.randn(2, 3, 8, 9, 9)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    grads = [torch.autograd.grad(f(x).square().sum(), list(layer.parameters())) for f in (layer, compiled)]
    for eager, comp in zip(*grads):
        torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["rotmnist", "allcnnc"])
def test_p4m_models_trace_as_one_graph(arch) -> None:
    [row] = check_models([arch], ["p4m"], log=lambda _: None)
    assert (row["graphs"], row["graph_breaks"]) == (1, 0), row


@pytest.mark.slow
@pytest.mark.parametrize("arch,group", ALL_MODELS)
def test_every_model_traces_as_one_graph(arch, group) -> None:
    [row] = check_models([arch], [group], log=lambda _: None)
    assert (row["graphs"], row["graph_breaks"]) == (1, 0), row


@pytest.mark.slow
@pytest.mark.parametrize("arch,group", ALL_MODELS)
def test_every_model_compiles_with_inductor(arch, group) -> None:
    [row] = check_models([arch], [group], backend="inductor", log=lambda _: None)
    assert row["ok"] and row["graph_breaks"] == 0, row


@pytest.mark.slow
def test_inductor_training_step_matches_eager() -> None:
    torch.manual_seed(0)
    shape = models.default_input_shape("rotmnist")
    model = models.build_model("rotmnist", "p4m", in_channels=shape[0], width=0.25).train()
    x = torch.randn(4, *shape)
    compiled = torch.compile(model, fullgraph=True)
    params = list(model.parameters())
    grads = [torch.autograd.grad(f(x).logsumexp(1).sum(), params) for f in (model, compiled)]
    for eager, comp in zip(*grads):
        torch.testing.assert_close(comp, eager, rtol=1e-3, atol=1e-4)
