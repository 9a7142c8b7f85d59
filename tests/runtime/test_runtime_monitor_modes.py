"""Monitor: mode and grad findings (BNL001, BNL002, BNL003) and frozen statistics (BNL101)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.optim.swa_utils import AveragedModel, update_bn  # noqa: E402

from bnlint.diagnostic import Diagnostic  # noqa: E402
from bnlint.runtime import Monitor, freeze_norm_layers, recalibrate_batchnorm  # noqa: E402
from tests.runtime import models  # noqa: E402
from tests.runtime.models import (  # noqa: E402
    Backbone,
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


def watch(body: Callable[[], object]) -> list[Diagnostic]:
    with Monitor() as monitor:
        body()
    return monitor.findings()


def found(findings: list[Diagnostic]) -> set[tuple[str, str, int]]:
    return {(d.code, "models" if d.path == models.__file__ else "here", d.line) for d in findings}


# -- BNL001 eval-loop-in-train-mode ------------------------------------------------------------


def test_bnl001_evaluation_left_in_training_mode() -> None:
    model, train, val = SmallCNN(), loader(), loader(dataset(16, seed=1))
    optimizer = sgd(model)

    def run() -> None:
        for _ in range(2):
            model.train()
            train_epoch(model, train, optimizer)
            evaluate(model, val)  # the missing model.eval()

    [finding] = watch(run)
    assert (finding.code, finding.path, finding.line) == (
        "BNL001",
        models.__file__,
        site("evaluate"),
    )
    assert finding.column == len("        logits = ") + 1
    assert (
        "under no_grad" in finding.message and "2 layers of SmallCNN (bn, drop)" in finding.message
    )
    assert finding.extra == {"module": "", "model": "SmallCNN", "source": "runtime"}


def test_bnl001_not_reported_after_eval() -> None:
    model, train, val = SmallCNN(), loader(), loader(dataset(16, seed=1))
    optimizer = sgd(model)

    def run() -> None:
        for _ in range(2):
            model.train()
            train_epoch(model, train, optimizer)
            model.eval()
            evaluate(model, val)

    assert watch(run) == []


def test_bnl001_when_the_evaluation_loop_breaks_early() -> None:
    model, val = SmallCNN(), loader(dataset(16, seed=1))

    @torch.no_grad()
    def run() -> None:
        for x, _ in val:
            preds = model(x)  # site: break
            break
        del preds

    assert found(watch(run)) == {("BNL001", "here", site("break", HERE))}


def test_bnl001_without_a_dataloader() -> None:
    model, batches = SmallCNN(), [torch.randn(4, 3, 8, 8) for _ in range(3)]

    def run() -> None:
        scores = []
        with torch.no_grad():
            for x in batches:
                out = model(x)  # site: tensor-loop
                scores.append(out.softmax(1))

    assert found(watch(run)) == {("BNL001", "here", site("tensor-loop", HERE))}


def test_update_bn_and_recalibration_loops_are_not_evaluation() -> None:
    model, train = SmallCNN(), loader()
    swa = AveragedModel(model)

    def manual_recalibration() -> None:
        model.train()
        with torch.no_grad():
            for x, _ in train:
                model(x)  # outputs discarded: BatchNorm recalibration

    def cumulative_average() -> None:
        model.train()
        model.bn.reset_running_stats()
        model.bn.momentum = None
        with torch.no_grad():
            for x, _ in train:
                out = model(x)
        model.bn.momentum = 0.1
        del out

    def run() -> None:
        update_bn(train, swa)
        recalibrate_batchnorm(model, train)
        manual_recalibration()
        cumulative_average()
        swa.eval()
        evaluate(swa, train)  # eval mode: fine (BNL301 needs optimizer steps on `train`)

    assert watch(run) == []


def test_bnl001_swa_model_evaluated_in_training_mode() -> None:
    model, train, val = SmallCNN(), loader(), loader(dataset(16, seed=1))
    optimizer, swa = sgd(model), AveragedModel(SmallCNN())

    def run(evaluate_in_eval_mode: bool) -> None:
        train_epoch(model, train, optimizer)
        swa.update_parameters(model)
        update_bn(train, swa)
        swa.train(not evaluate_in_eval_mode)
        evaluate(swa, val)

    [finding] = watch(lambda: run(False))
    assert (finding.code, finding.line, finding.extra["model"]) == (
        "BNL001",
        site("evaluate"),
        "AveragedModel",
    )
    assert "module.bn" in finding.message
    assert watch(lambda: run(True)) == []


def test_teacher_forward_in_training_mode_under_no_grad_is_training() -> None:
    student, teacher, train = SmallCNN(), SmallCNN(), loader()
    optimizer = sgd(student)

    def run() -> None:
        for x, _ in train:
            with torch.no_grad():
                target = teacher(x).softmax(1)  # train-mode teacher, as in MoCo/BYOL
            loss = F.kl_div(student(x).log_softmax(1), target, reduction="batchmean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    assert watch(run) == []


def test_monte_carlo_dropout_is_not_reported() -> None:
    model, val = SmallCNN().eval(), loader(dataset(16, seed=1))
    model.drop.train()

    def run() -> None:
        with torch.no_grad():
            for x, _ in val:
                samples = torch.stack([model(x) for _ in range(4)])
                samples.mean(0)

    assert watch(run) == []


# -- BNL002 eval-loop-without-no-grad ----------------------------------------------------------


def test_bnl002_evaluation_with_autograd_on() -> None:
    model, val = SmallCNN().eval(), loader(dataset(16, seed=1))

    def run() -> None:
        correct = 0
        for x, y in val:
            logits = model(x)  # site: grad-eval
            correct += int((logits.argmax(1) == y).sum())

    [finding] = watch(run)
    assert (finding.code, finding.name) == ("BNL002", "eval-loop-without-no-grad")
    assert finding.line == site("grad-eval", HERE)


def test_bnl002_not_reported_when_the_output_is_back_propagated() -> None:
    # A frozen feature network in eval mode inside the loss (perceptual loss): autograd must be on.
    generator, critic, train = nn.Conv2d(3, 3, 1), Backbone().eval(), loader()
    critic.requires_grad_(False)
    optimizer = sgd(generator)

    def run() -> None:
        for x, _ in train:
            loss = F.mse_loss(critic(generator(x)), critic(x).detach())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    assert watch(run) == []


def test_bnl002_waits_for_a_backward_over_several_batches() -> None:
    model, train = SmallCNN().eval(), loader()
    optimizer = sgd(model)

    def run() -> None:
        losses = []
        for x, y in train:
            losses.append(F.cross_entropy(model(x), y))
            if len(losses) == 2:
                optimizer.zero_grad()
                torch.stack(losses).sum().backward()
                optimizer.step()
                losses = []

    assert watch(run) == []


# -- BNL003 train-mode-not-restored ------------------------------------------------------------


def test_bnl003_training_continues_in_eval_mode() -> None:
    model, train, val = SmallCNN(), loader(), loader(dataset(16, seed=1))
    optimizer = sgd(model)

    def run() -> None:
        model.train()
        for _ in range(2):
            train_epoch(model, train, optimizer)  # the second epoch trains in eval mode
            model.eval()
            evaluate(model, val)

    [finding] = watch(run)
    assert (finding.code, finding.line) == ("BNL003", site("train"))
    assert "SmallCNN is in eval mode while its loss drives optimizer steps" in finding.message


def test_bnl003_not_reported_when_train_is_restored_or_eval_is_deliberate() -> None:
    model, train, val = SmallCNN(), loader(), loader(dataset(16, seed=1))
    optimizer = sgd(model)

    def restored() -> None:
        for _ in range(2):
            model.train()
            train_epoch(model, train, optimizer)
            model.eval()
            evaluate(model, val)

    def always_eval() -> None:  # fine-tuning with BatchNorm frozen through eval()
        model.eval()
        train_epoch(model, train, optimizer)

    assert watch(restored) == []
    assert watch(always_eval) == []


# -- BNL101 frozen-bn-still-updates ------------------------------------------------------------


def test_bnl101_frozen_backbone_statistics_drift() -> None:
    model, train = frozen_backbone_classifier(), loader()
    optimizer = sgd(model)
    [finding] = watch(lambda: train_epoch(model.train(), train, optimizer))
    assert (finding.code, finding.line, finding.extra["module"]) == (
        "BNL101",
        site("train"),
        "backbone",
    )
    assert "running statistics of backbone (5 layers" in finding.message


def test_bnl101_not_reported_for_frozen_norms_or_recalibration() -> None:
    model, train = frozen_backbone_classifier(), loader()
    optimizer = sgd(model)

    def run() -> None:
        update_bn(train, model)  # recalibration moves statistics on purpose
        freeze_norm_layers(model.backbone)
        train_epoch(model.train(), train, optimizer)

    assert watch(run) == []
