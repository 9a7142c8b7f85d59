from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.data import (
    DatasetSite,
    Role,
    dataset_sites,
    draws_random,
    names_random,
    random_transform_in,
    role_from_arguments,
    role_from_name,
)
from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.values import values_at
from bnlint.diagnostic import Severity
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule

# Explicit test-time augmentation is random on purpose.
_TEST_TIME_AUGMENTATION = re.compile(r"tta|test_time_aug|augment", re.IGNORECASE)


class EvaluationWithTrainAugmentation(Rule):
    """
    ## What it does
    Finds a validation or test dataset built with random augmentation
    (`RandomResizedCrop`, `RandomHorizontalFlip`, `ColorJitter`, `RandAugment`,
    albumentations' random transforms, MONAI's `Rand*` transforms, PyTorch
    Geometric's `SamplePoints`, timm's `create_transform(is_training=True)`, ...),
    or with the same transform object as the training dataset (a module global or
    attribute, or a local of the same function: two methods' locals of the same
    name are two transforms).

    A dataset is an evaluation dataset when its arguments say so (`train=False`,
    `split="val"`, a root path ending in `val`/`test`) or the name it is assigned to
    does (`val_set`, `test_dataset`). A dataset pooled into a `ConcatDataset` has
    the pool's role: a `test` split pooled into training data is training data.

    ## Why is this bad?
    Random crops, flips and colour changes at evaluation time make the metric noisy
    from run to run and biased downwards: you compare checkpoints on different data
    each epoch, and early stopping and model selection follow the noise.

    ## Known problems
    Only transforms built in the same file are followed. Steps that every library spells
    alike (`ToTensor`, `Normalize`, `Resize`, `CenterCrop`) and conversions named
    `To...` (a project's `ToTensor1D`) are deterministic wherever they come from. A
    function or module class of the file used as the transform is read: if it calls
    nothing random (`np.random`, `torch.rand*`, `random.*`, a random transform), sharing
    it is fine. Explicit test-time augmentation (a dataset named `tta_*` or `*augment*`)
    is not reported. A transform we cannot read is reported, as a warning, only with
    evidence that it augments: its variable is named `train_*`, or the training dataset
    shares it and it is built by a call named or flagged for training or augmentation
    (`build_augmentation(cfg)`, `preprocessing_transforms("train")`) or by code of the
    file that draws random numbers. Without such evidence one transform for both splits
    is their common preprocessing (a pretrained model's preset `weights.transforms()`,
    a helper's `transform` parameter, `make_classification_eval_transform()`, a
    tokenizer), and is not reported. Nor is a transform variable that the
    training and evaluation datasets get in different branches of one `if mode ==
    "train": ... elif mode == "test": ...` chain, where each run builds one of them.

    ## Fix safety
    When exactly one deterministic evaluation transform (`val_transform`,
    `test_tf`, ...) is in scope, the fix passes it instead. It is unsafe: it
    changes the data the model is evaluated on, which is the point, but check it is
    the pipeline you meant.
    """

    code = "BNL302"
    name = "evaluation-with-train-augmentation"
    summary = "a validation/test dataset built with random or training augmentation"
    fixable = True
    triggers = ("transform=", "transforms=", "transform =")

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        sites = dataset_sites(model)
        training: dict[_TransformKey | None, list[DatasetSite]] = {}
        for site in sites:
            if site.role is Role.TRAIN:
                training.setdefault(_transform_key(model, site), []).append(site)
        for site in sites:
            if site.role is not Role.EVAL or _TEST_TIME_AUGMENTATION.search(site.target or ""):
                continue
            finding = self._check_site(model, site, training)
            if finding is not None:
                yield finding

    def _check_site(
        self,
        model: SemanticModel,
        site: DatasetSite,
        training: dict[_TransformKey | None, list[DatasetSite]],
    ) -> Finding | None:
        value = site.transform.value
        transform_name = dotted_name(value)
        dataset = f"`{site.target}`" if site.target else "this evaluation dataset"
        random = random_transform_in(model, value, site.call.function)
        severity = None
        if random is not None:
            through = f" (through `{transform_name}`)" if transform_name else ""
            problem = f"{dataset} is built with random augmentation `{random}`{through}"
        elif (
            transform_name is None
            or _readable_pipeline(model, site)
            or _deterministic_local_code(model, site)
        ):
            return None  # a pipeline or code we can read, and it is deterministic
        elif _shares_training_transform(model, site, training) and _built_for_training(model, site):
            problem = f"{dataset} is built with the training transform `{transform_name}`"
            severity = Severity.WARNING  # we cannot see whether that transform is random
        elif transform_name and role_from_name(transform_name) is Role.TRAIN:
            problem = (
                f"{dataset} is built with `{transform_name}`, by its name a training transform"
            )
            severity = Severity.WARNING
        else:
            return None
        return Finding(
            site.transform,
            f"{problem}: evaluation results are noisy and biased; use a deterministic "
            "eval transform (resize, center crop, normalise)",
            self._fix(model, site),
            severity,
        )

    @staticmethod
    def _fix(model: SemanticModel, site: DatasetSite) -> FixPlan | None:
        candidates = set()
        for assignment in model.assignments:
            name = dotted_name(assignment.target)
            if (
                name is not None
                and assignment.function in (site.call.function, None)
                and role_from_name(name) is Role.EVAL
                and _looks_like_transform(name, assignment.value)
                and assignment.value is not None
                and random_transform_in(model, assignment.value, assignment.function) is None
            ):
                candidates.add(name)
        if len(candidates) != 1:
            return None
        (replacement,) = candidates
        return FixPlan(
            (NodeEdit(site.transform.value, Anchor.REPLACE, replacement),),
            safe=False,
            description=f"Use `{replacement}`",
        )


_TRANSFORM_NAME = re.compile(r"transform|tfms?\b|(^|_)tfs?($|_)", re.IGNORECASE)
_PIPELINE_BUILDERS = ("compose", "create_transform", "sequential")


_TRANSFORM_LIBRARIES = (
    "torchvision.transforms",
    "albumentations",
    "timm.data",
    "kornia",
    "monai.transforms",
    "torch_geometric.transforms",
)


# Steps that every transform library spells the same way and none makes random.
_DETERMINISTIC_STEPS = frozenset(
    {"Compose", "ToTensor", "PILToTensor", "ToImage", "ToDtype", "ConvertImageDtype"}
    | {"Normalize", "Resize", "CenterCrop", "Grayscale"}
)


# A conversion step (``ToTensor1D``, ``ToFloat``, a project's own): deterministic
# whatever library or project spells it.
_CONVERSION = re.compile(r"To[A-Z0-9]")


# A transform variable: its name, and the function it is local to (None for
# module globals and attributes, which every function shares).
_TransformKey = tuple[FunctionInfo | None, str]


def _transform_key(model: SemanticModel, site: DatasetSite) -> _TransformKey | None:
    """Lightning-Bolts' ``train_dataloader`` and ``val_dataloader`` each have a
    local ``transforms``: the same name, not the same transform."""
    name = dotted_name(site.transform.value)
    if name is None:
        return None
    scope = site.call.function
    local = scope is not None and (
        name in scope.parameter_names()
        or any(a.function is scope for a in model.assignments_by_target.get(name, ()))
    )
    return (scope if local else None, name)


def _shares_training_transform(
    model: SemanticModel,
    site: DatasetSite,
    training: dict[_TransformKey | None, list[DatasetSite]],
) -> bool:
    """Is a training dataset built with the same transform in the same run? Not
    one built in another branch of the ``if mode == "train": ... elif mode ==
    "test": ...`` that builds this one."""
    scope = site.call.function
    return any(
        not (
            train.call.function is scope
            and model.in_exclusive_branches(train.call.node, site.call.node, scope)
        )
        for train in training.get(_transform_key(model, site), ())
    )


def _built_for_training(model: SemanticModel, site: DatasetSite) -> bool:
    """Evidence that a shared transform we cannot read augments: code of this
    file that draws random numbers, or a call named or flagged for training or
    augmentation that builds it (``build_augmentation(cfg)``,
    ``preprocessing_transforms("train")``). Without any, one transform for both
    splits is their common preprocessing: a pretrained model's preset
    (``weights.transforms()``), a helper's ``transform`` parameter, a tokenizer."""
    scope = site.call.function
    local_code = _local_code(model, site.transform.value, scope)
    if any(draws_random(model, function) for function in local_code):
        return True
    return any(_training_factory_call(v) for v in values_at(model, site.transform.value, scope))


def _training_factory_call(value: cst.BaseExpression) -> bool:
    if not isinstance(value, cst.Call):
        return False
    called = (dotted_name(value.func) or "").rsplit(".", 1)[-1]
    return (
        role_from_name(called) is Role.TRAIN
        or names_random(called)
        or role_from_arguments(value) is Role.TRAIN
    )


def _readable_pipeline(model: SemanticModel, site: DatasetSite) -> bool:
    """Is the transform, as it is where the dataset is built, made only from known
    transform code: a transform library's, or steps every library spells alike
    (``catalyst``'s ``Compose([ToTensor(), Normalize(...)])``)?"""
    values = values_at(model, site.transform.value, site.call.function)
    return bool(values) and all(
        isinstance(value, cst.Call)
        and (
            (model.qualname(value.func) or "").startswith(_TRANSFORM_LIBRARIES)
            or _known_steps_only(value)
        )
        for value in values
    )


def _deterministic_local_code(model: SemanticModel, site: DatasetSite) -> bool:
    """``def data_tf(x): ...`` or ``self.preprocess = Preprocess()``, with a function
    or class of this file that calls nothing random."""
    functions = _local_code(model, site.transform.value, site.call.function)
    return bool(functions) and all(draws_random(model, f) is False for f in functions)


def _local_code(
    model: SemanticModel, transform: cst.BaseExpression, scope: FunctionInfo | None
) -> list[FunctionInfo]:
    """The functions of this file that ``transform`` runs: the function it names
    (each definition, as notebooks redefine them), or every method of the class
    it is an instance of. Empty when it is anything else."""
    name = dotted_name(transform)
    defined = [
        f for f in model.functions if f.name == name and f.cls is None and f.parent in (None, scope)
    ]
    if defined:
        return defined
    values = values_at(model, transform, scope)
    if len(values) != 1 or not isinstance(values[0], cst.Call):
        return []
    cls = model.class_named(values[0].func)
    if cls is None or any(names_random(dotted_name(base) or "") for base in cls.bases):
        return []  # ``class MyCrop(T.RandomCrop)``: the library's random step
    return list(cls.methods.values())


def _known_steps_only(call: cst.Call) -> bool:
    """``Compose([ToTensor(), Normalize(m, s)])``, ``ToTensor1D()``: each call a
    deterministic step."""
    step = (dotted_name(call.func) or "").rsplit(".", 1)[-1]
    if step not in _DETERMINISTIC_STEPS and not _CONVERSION.match(step):
        return False
    if step != "Compose":
        return True  # its arguments are settings, not steps
    steps = [
        element.value
        for arg in call.args
        if isinstance(arg.value, cst.List | cst.Tuple)
        for element in arg.value.elements
    ]
    return all(isinstance(step, cst.Call) and _known_steps_only(step) for step in steps)


def _looks_like_transform(name: str, value: cst.BaseExpression | None) -> bool:
    if _TRANSFORM_NAME.search(name):
        return True
    if isinstance(value, cst.Call):
        return (dotted_name(value.func) or "").lower().endswith(_PIPELINE_BUILDERS)
    return False
