from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from bnlint.runtime import audit, freeze_norm_layers  # noqa: E402
from tests.runtime.models import Classifier, SmallCNN, frozen_backbone_classifier  # noqa: E402


def codes(model: nn.Module, **kwargs: object) -> list[str]:
    return [d.code for d in audit(model, **kwargs)]


def test_correct_models_are_clean() -> None:
    model = SmallCNN()
    assert audit(model) == []
    assert audit(model.eval()) == []


def test_bnl101_frozen_backbone_in_training_mode_is_one_finding() -> None:
    [finding] = audit(frozen_backbone_classifier().train())
    assert (finding.code, finding.name) == ("BNL101", "frozen-bn-still-updates")
    assert finding.extra["module"] == "backbone"
    assert "backbone (5 layers: backbone.bn1, backbone.layer1.0.bn1" in finding.message
    assert (finding.path, finding.line, finding.column) == ("<model>", 1, 1)


def test_bnl101_not_reported_once_the_norm_layers_are_frozen() -> None:
    model = frozen_backbone_classifier()
    freeze_norm_layers(model.backbone)
    assert codes(model.train()) == []


def test_bnl101_counts_lr_zero_parameter_groups_as_frozen() -> None:
    model = Classifier()
    optimizer = torch.optim.SGD(
        [{"params": model.backbone.parameters(), "lr": 0.0}, {"params": model.head.parameters()}],
        lr=0.1,
    )
    assert codes(model) == []
    assert codes(model, optimizer=optimizer) == ["BNL101"]


def test_bnl101_covers_instance_norm_and_sync_batchnorm() -> None:
    model = nn.Sequential(
        nn.InstanceNorm2d(4, affine=True, track_running_stats=True), nn.SyncBatchNorm(4)
    )
    model.requires_grad_(False)
    [finding] = audit(model)
    assert finding.code == "BNL101"
    assert "2 layers of Sequential (0, 1)" in finding.message


@pytest.mark.parametrize("switch_on", [True, False])
def test_bnl103_flag_disagrees_with_buffers(switch_on: bool) -> None:
    model = SmallCNN()
    if switch_on:
        model.bn = nn.BatchNorm2d(8, track_running_stats=False)
    model.bn.track_running_stats = switch_on
    [finding] = audit(model)
    assert (finding.code, finding.extra["module"]) == ("BNL103", "bn")


def test_bnl103_not_reported_for_layers_built_without_running_stats() -> None:
    model = nn.Sequential(nn.BatchNorm1d(4, track_running_stats=False), nn.InstanceNorm1d(4))
    assert codes(model) == []


def test_bnl106_batch_statistics_in_an_evaluated_model() -> None:
    model = SmallCNN()
    model.bn = nn.BatchNorm2d(8, track_running_stats=False)
    assert codes(model) == []
    [finding] = audit(model.eval())
    assert (finding.code, finding.severity.value, finding.extra["module"]) == (
        "BNL106",
        "warning",
        "bn",
    )


def test_bnl106_ignores_instance_norm_without_running_stats() -> None:
    assert codes(nn.Sequential(nn.Conv2d(3, 3, 1), nn.InstanceNorm2d(3)).eval()) == []


def test_bnl001_partial_eval() -> None:
    model = Classifier().eval()
    model.head.train()
    [finding] = audit(model)
    assert (finding.code, finding.name) == ("BNL001", "eval-loop-in-train-mode")
    assert finding.extra["module"] == "head"
    assert "head (2 layers: head.1, head.2)" in finding.message


def test_bnl001_not_reported_for_monte_carlo_dropout() -> None:
    model = Classifier().eval()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.train()
    assert codes(model) == []


def test_path_label_is_used() -> None:
    [finding] = audit(frozen_backbone_classifier(), path="train.py")
    assert finding.path == "train.py"
