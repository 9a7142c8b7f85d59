from __future__ import annotations

import copy
import io

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.optim.swa_utils import update_bn  # noqa: E402

from bnlint.runtime import freeze_norm_layers, recalibrate_batchnorm  # noqa: E402
from tests.runtime.models import Classifier, SmallCNN, loader  # noqa: E402


def norm_modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]


def test_freeze_norm_layers_survives_train_calls() -> None:
    model = Classifier()
    frozen = freeze_norm_layers(model.backbone)
    assert frozen == ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer1.1.bn1", "layer1.1.bn2"]
    model.train()
    model.backbone.layer1[0].bn1.train()
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.head[1].training  # the head's BatchNorm was not frozen
    assert not any(p.requires_grad for p in model.backbone.bn1.parameters())


def test_frozen_statistics_do_not_move_in_training() -> None:
    model = Classifier()
    freeze_norm_layers(model)
    before = model.backbone.bn1.running_mean.clone()
    model.train()(torch.randn(4, 3, 8, 8))
    assert torch.equal(model.backbone.bn1.running_mean, before)


def test_freeze_survives_deepcopy_and_pickle() -> None:
    model = SmallCNN()
    freeze_norm_layers(model, freeze_affine=False)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        clone.train()
        assert not clone.bn.training
        assert clone.bn.weight.requires_grad


def test_freeze_is_undone_by_deleting_the_attribute() -> None:
    model = SmallCNN()
    freeze_norm_layers(model)
    del model.bn.train
    assert model.train().bn.training


def test_recalibrate_matches_a_cumulative_average_and_restores_state() -> None:
    model = SmallCNN()
    freeze_norm_layers(model)  # frozen layers are left alone ...
    del model.bn.train  # ... so unfreeze this one to recalibrate it
    model.eval()
    model.bn.momentum = 0.3
    data = loader()
    assert recalibrate_batchnorm(model, data) == 4

    features = torch.cat([model.conv(x) for x, _ in data])
    expected = features.mean((0, 2, 3))
    assert torch.allclose(model.bn.running_mean, expected, atol=1e-5)
    assert model.bn.momentum == 0.3
    assert norm_modes(model) == [False] and not model.training
    assert int(model.bn.num_batches_tracked) == 4


def test_recalibrate_runs_dropout_in_eval_and_honours_num_batches() -> None:
    model = SmallCNN().train()
    seen = []
    model.drop.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    assert recalibrate_batchnorm(model, loader(), num_batches=2) == 2
    assert seen == [False, False]
    assert model.training and model.drop.training
    assert int(model.bn.num_batches_tracked) == 2


def test_recalibrate_agrees_with_update_bn_without_dropout() -> None:
    first, second = SmallCNN(), SmallCNN()
    second.load_state_dict(first.state_dict())
    first.drop.p = second.drop.p = 0.0
    data = loader()
    update_bn(data, first)
    recalibrate_batchnorm(second, data)
    assert torch.allclose(first.bn.running_var, second.bn.running_var, atol=1e-6)


def test_recalibrate_leaves_frozen_layers_alone() -> None:
    model = SmallCNN()
    freeze_norm_layers(model)
    before = model.bn.running_mean.clone()
    assert recalibrate_batchnorm(model, loader()) == 0
    assert torch.equal(model.bn.running_mean, before)


def test_recalibrate_restores_momentum_on_error() -> None:
    model = SmallCNN()

    def broken():
        yield torch.randn(2, 3, 8, 8)
        raise RuntimeError("loader failed")

    with pytest.raises(RuntimeError):
        recalibrate_batchnorm(model, broken())
    assert model.bn.momentum == 0.1 and model.bn.training
