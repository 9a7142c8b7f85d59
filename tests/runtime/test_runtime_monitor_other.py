"""Monitor: exports (BNL005), functional dropout (BNL201/BNL203), data (BNL301), mechanics."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.modules import module as module_hooks  # noqa: E402
from torch.optim import optimizer as optimizer_hooks  # noqa: E402
from torch.utils.data import DataLoader, random_split  # noqa: E402

from bnlint.diagnostic import Diagnostic  # noqa: E402
from bnlint.runtime import LayerEvent, Monitor  # noqa: E402
from tests.runtime.models import (  # noqa: E402
    SmallCNN,
    dataset,
    evaluate,
    frozen_backbone_classifier,
    loader,
    sgd,
    site,
    train_epoch,
)

HERE = __file__
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def watch(body: Callable[[], object]) -> list[Diagnostic]:
    with Monitor() as monitor:
        body()
    return monitor.findings()


# -- BNL005 export-in-train-mode ---------------------------------------------------------------


def test_bnl005_trace_in_training_mode() -> None:
    model = SmallCNN()

    def run() -> None:
        torch.jit.trace(model, torch.randn(2, 3, 8, 8), check_trace=False)  # site: trace

    [finding] = watch(run)  # the tracing forward passes themselves are not evaluation passes
    assert (finding.code, finding.name) == ("BNL005", "export-in-train-mode")
    assert finding.line == site("trace", HERE)
    assert (
        "torch.jit.trace exports SmallCNN with 2 layers of SmallCNN (bn, drop)" in finding.message
    )


def test_bnl005_torch_export_in_training_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    [finding] = watch(lambda: torch.export.export(model, (torch.randn(2, 4),)))
    assert finding.code == "BNL005" and "torch.export.export" in finding.message


def test_bnl005_not_reported_in_eval_mode() -> None:
    model = SmallCNN().eval()
    assert watch(lambda: torch.jit.trace(model, torch.randn(2, 3, 8, 8))) == []


def test_bnl005_onnx_follows_the_training_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.onnx, "export", lambda model, args, f=None, **kwargs: None)
    train_mode, eval_mode = SmallCNN(), SmallCNN().eval()
    TrainingMode = torch.onnx.TrainingMode

    def codes(model: nn.Module, **kwargs: object) -> list[str]:
        return [
            d.code
            for d in watch(lambda: torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), **kwargs))
        ]

    assert codes(train_mode) == ["BNL005"]  # the default dynamo exporter keeps the current mode
    assert codes(eval_mode, training=TrainingMode.TRAINING) == ["BNL005"]
    assert codes(eval_mode) == []
    assert codes(train_mode, dynamo=False) == []  # the legacy exporter switches to eval itself


# -- BNL201 / BNL203 functional dropout --------------------------------------------------------


class FunctionalHead(nn.Module):
    def __init__(self, follow_mode: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.follow_mode = follow_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.follow_mode:
            return F.dropout(self.fc(x), 0.1, training=self.training)
        return F.dropout(self.fc(x), 0.1)  # site: functional-dropout


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    return F.dropout(x, p)  # site: helper-dropout


class HelperHead(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, 0.1)


class Attention(nn.Module):
    def __init__(self, follow_mode: bool) -> None:
        super().__init__()
        self.follow_mode = follow_mode

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        p = 0.1 if self.training or not self.follow_mode else 0.0
        return F.scaled_dot_product_attention(q, q, q, dropout_p=p)  # site: sdpa


def test_bnl201_functional_dropout_in_eval_mode() -> None:
    model = nn.Sequential(nn.Linear(8, 8), FunctionalHead(follow_mode=False)).eval()
    [finding] = watch(torch.no_grad()(lambda: model(torch.randn(2, 8))))
    assert (finding.code, finding.line) == ("BNL201", site("functional-dropout", HERE))
    assert finding.extra["module"] == "1"
    assert "dropout() applies dropout inside 1 (FunctionalHead)" in finding.message


def test_bnl201_not_reported_when_training_follows_the_module() -> None:
    model = nn.Sequential(FunctionalHead(follow_mode=True), nn.Dropout(0.5)).eval()

    @torch.no_grad()
    def run() -> None:
        model(torch.randn(2, 8))
        F.dropout(torch.randn(2, 8), 0.5)  # outside any module
        FunctionalHead(follow_mode=False).train()(torch.randn(2, 8))

    assert watch(run) == []


def test_bnl201_in_a_helper_called_by_the_module() -> None:
    [finding] = watch(lambda: HelperHead().eval()(torch.randn(2, 8)))
    assert (finding.code, finding.line) == ("BNL201", site("helper-dropout", HERE))


def test_bnl203_attention_dropout_in_eval_mode() -> None:
    q = torch.randn(1, 2, 4, 8)
    [finding] = watch(lambda: Attention(follow_mode=False).eval()(q))  # no parameters: no BNL002
    assert (finding.code, finding.line) == ("BNL203", site("sdpa", HERE))


@torch.no_grad()
def test_bnl203_not_reported_when_dropout_p_follows_the_mode() -> None:
    q = torch.randn(1, 2, 4, 8)
    attention = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True).eval()
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, batch_first=True).eval()
    x = torch.randn(2, 4, 8)
    assert (
        watch(lambda: (Attention(follow_mode=True).eval()(q), attention(x, x, x), layer(x))) == []
    )


# -- BNL301 evaluation-on-training-data --------------------------------------------------------


def train_then_evaluate(evaluation_loader: Callable[[DataLoader], DataLoader]) -> list[Diagnostic]:
    model, train = SmallCNN(), loader()
    optimizer = sgd(model)

    def run() -> None:
        model.train()
        train_epoch(model, train, optimizer)
        model.eval()
        evaluate(model, evaluation_loader(train))

    return watch(run)


def test_bnl301_evaluating_on_the_training_loader() -> None:
    [finding] = train_then_evaluate(lambda train: train)
    assert (finding.code, finding.line) == ("BNL301", site("evaluate"))
    assert "from the DataLoader that also feeds optimizer steps" in finding.message


def test_bnl301_evaluating_on_the_training_dataset() -> None:
    [finding] = train_then_evaluate(lambda train: DataLoader(train.dataset, batch_size=16))
    assert finding.code == "BNL301" and "from the dataset" in finding.message


def test_bnl301_not_reported_for_a_split_or_a_separate_dataset() -> None:
    whole = dataset(48)
    train_part, val_part = random_split(whole, [32, 16], generator=torch.Generator().manual_seed(0))
    model, train = SmallCNN(), loader(train_part)
    optimizer = sgd(model)

    def run() -> None:
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.eval()
                model(x)  # logging on the training batch after the step is not evaluation
                model.train()
        model.eval()
        evaluate(model, loader(val_part))
        evaluate(model, loader(dataset(16, seed=1)))

    assert watch(run) == []


# -- mechanics ---------------------------------------------------------------------------------

PATCHED = [
    (DataLoader, "__iter__"),
    (F, "dropout"),
    (F, "dropout2d"),
    (F, "alpha_dropout"),
    (F, "scaled_dot_product_attention"),
    (torch, "dropout"),
    (torch.jit, "trace"),
    (torch.export, "export"),
    (torch.onnx, "export"),
]


def hook_counts() -> tuple[int, ...]:
    return (
        len(module_hooks._global_forward_pre_hooks),
        len(module_hooks._global_forward_hooks),
        len(optimizer_hooks._global_optimizer_pre_hooks),
    )


def test_everything_is_restored_also_on_error() -> None:
    originals = [getattr(owner, name) for owner, name in PATCHED]
    hooks = hook_counts()
    with pytest.raises(RuntimeError, match="boom"), Monitor():
        assert F.dropout is not originals[1]
        assert hook_counts() != hooks
        raise RuntimeError("boom")
    assert [getattr(owner, name) for owner, name in PATCHED] == originals
    assert hook_counts() == hooks


def test_monitor_does_not_change_the_numbers() -> None:
    def trained_weights(monitored: bool) -> list[torch.Tensor]:
        torch.manual_seed(1)
        model, train = frozen_backbone_classifier(), loader()
        optimizer = sgd(model)
        if monitored:
            with Monitor(record_events=True):
                train_epoch(model.train(), train, optimizer)
        else:
            train_epoch(model.train(), train, optimizer)
        return [t.clone() for t in model.state_dict().values()]

    assert all(
        torch.equal(a, b)
        for a, b in zip(trained_weights(True), trained_weights(False), strict=True)
    )


def test_findings_are_deduplicated_and_accumulate_over_decorated_calls() -> None:
    monitor = Monitor()
    model, val = SmallCNN(), loader(dataset(16, seed=1))

    @monitor
    def validate() -> float:
        return evaluate(model, val)

    validate()
    validate()
    assert [d.code for d in monitor.findings()] == ["BNL001"]


def test_limit_batches_stops_every_iteration() -> None:
    data = loader()
    with Monitor(limit_batches=2):
        assert len(list(data)) == 2
        assert len(list(data)) == 2
        assert len(iter(data)) == 4
    assert len(list(data)) == 4


def test_record_events() -> None:
    model, train = frozen_backbone_classifier(), loader()
    optimizer = sgd(model)
    with Monitor(record_events=True, limit_batches=1) as monitor:
        train_epoch(model.train(), train, optimizer)
    events = {event.module: event for event in monitor.events}
    assert set(events) == {
        "backbone.bn1",
        "backbone.layer1.0.bn1",
        "backbone.layer1.0.bn2",
        "backbone.layer1.1.bn1",
        "backbone.layer1.1.bn2",
        "head.1",
        "head.2",
    }
    assert events["backbone.bn1"] == LayerEvent(
        module="backbone.bn1",
        model="Classifier",
        kind="norm",
        training=True,
        grad_enabled=True,
        stats_changed=True,
        loader=train,
        path=events["backbone.bn1"].path,
        line=site("train"),
    )
    assert events["head.2"].kind == "dropout" and events["head.2"].stats_changed is None


def test_monitor_is_not_reentrant_and_ignores_other_threads() -> None:
    model = SmallCNN()
    with Monitor() as monitor:
        with pytest.raises(RuntimeError, match="already active"), monitor:
            pass
        thread = threading.Thread(
            target=lambda: torch.jit.trace(model, torch.randn(2, 3, 8, 8), check_trace=False)
        )
        thread.start()
        thread.join()
    assert monitor.findings() == []
