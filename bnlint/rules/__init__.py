"""The rule registry: every rule bnlint knows, in code order."""

from __future__ import annotations

from bnlint.rules.base import Documented, Rule
from bnlint.rules.bnl001_eval_loop_in_train_mode import EvalLoopInTrainMode
from bnlint.rules.bnl002_eval_loop_without_no_grad import EvalLoopWithoutNoGrad
from bnlint.rules.bnl003_train_mode_not_restored import TrainModeNotRestored
from bnlint.rules.bnl004_mode_call_missing_parens import ModeCallMissingParens
from bnlint.rules.bnl005_export_in_train_mode import ExportInTrainMode
from bnlint.rules.bnl006_whole_model_train_for_mc_dropout import WholeModelTrainForMcDropout
from bnlint.rules.bnl101_frozen_bn_still_updates import FrozenBnStillUpdates
from bnlint.rules.bnl102_train_undoes_freeze import TrainUndoesFreeze
from bnlint.rules.bnl103_track_running_stats_toggled import TrackRunningStatsToggled
from bnlint.rules.bnl104_averaged_model_without_bn_update import AveragedModelWithoutBnUpdate
from bnlint.rules.bnl105_batchnorm_tiny_batch import BatchnormTinyBatch
from bnlint.rules.bnl106_inference_with_batch_statistics import InferenceWithBatchStatistics
from bnlint.rules.bnl107_misspelt_requires_grad import MisspeltRequiresGrad
from bnlint.rules.bnl201_functional_dropout_always_on import FunctionalDropoutAlwaysOn
from bnlint.rules.bnl202_functional_batchnorm_hardcoded_training import (
    FunctionalBatchNormHardcodedTraining,
)
from bnlint.rules.bnl203_attention_dropout_always_on import AttentionDropoutAlwaysOn
from bnlint.rules.bnl204_stochastic_depth_always_on import StochasticDepthAlwaysOn
from bnlint.rules.bnl301_evaluation_on_training_data import EvaluationOnTrainingData
from bnlint.rules.bnl302_evaluation_with_train_augmentation import (
    EvaluationWithTrainAugmentation,
)
from bnlint.rules.bnl901_syntax_error import SyntaxErrorInFile
from bnlint.rules.bnl902_unreadable_file import UnreadableFile

ALL_RULES: tuple[type[Rule], ...] = tuple(
    sorted(
        [
            EvalLoopInTrainMode,
            EvalLoopWithoutNoGrad,
            TrainModeNotRestored,
            ModeCallMissingParens,
            ExportInTrainMode,
            WholeModelTrainForMcDropout,
            FrozenBnStillUpdates,
            TrainUndoesFreeze,
            TrackRunningStatsToggled,
            AveragedModelWithoutBnUpdate,
            BatchnormTinyBatch,
            InferenceWithBatchStatistics,
            MisspeltRequiresGrad,
            FunctionalDropoutAlwaysOn,
            FunctionalBatchNormHardcodedTraining,
            AttentionDropoutAlwaysOn,
            StochasticDepthAlwaysOn,
            EvaluationOnTrainingData,
            EvaluationWithTrainAugmentation,
        ],
        key=lambda rule: rule.code,
    )
)
RULES_BY_CODE: dict[str, type[Rule]] = {rule.code: rule for rule in ALL_RULES}

# Diagnostics about the input itself: the engine reports them, no rule checks.
INPUT_PROBLEMS: tuple[type[Documented], ...] = (SyntaxErrorInFile, UnreadableFile)
INPUT_CODES: dict[str, type[Documented]] = {problem.code: problem for problem in INPUT_PROBLEMS}
# Everything ``bnlint rules`` lists and ``bnlint explain`` documents.
DOCUMENTED: tuple[type[Documented], ...] = (*ALL_RULES, *INPUT_PROBLEMS)
DOCUMENTED_BY_CODE: dict[str, type[Documented]] = {entry.code: entry for entry in DOCUMENTED}
ALL_CODES: frozenset[str] = frozenset(DOCUMENTED_BY_CODE)
