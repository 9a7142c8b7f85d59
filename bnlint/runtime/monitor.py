"""``Monitor``: watch real forward passes and optimizer steps and confirm findings on them.

Everything is observed through global hooks and temporary patches, so the
user's model is never edited and its numbers never change:

- global module forward pre-/post-hooks keep a stack of running modules and
  record, for each call of a *top-level* model (a module called from outside
  any other module), the user line that called it, the grad mode, the model's
  mode, which mode-sensitive layers ran in training mode, and which frozen norm
  layers changed their running statistics (``num_batches_tracked`` compared
  before/after; a clone of ``running_mean`` only when that counter is missing);
- tensor hooks on the outputs of grad-enabled calls learn whether a backward
  pass reaches them; weak references learn whether the output was discarded;
- a global optimizer step pre-hook counts steps;
- ``DataLoader.__iter__`` is patched to tag each batch with its loader (the
  batch a model call consumes is the one most recently yielded by a live
  iterator), and optionally stops every iteration after ``limit_batches``;
- ``torch.jit.trace``, ``torch.export.export``, ``torch.onnx.export``,
  ``torch.nn.functional.dropout*``, ``torch.dropout`` and
  ``F.scaled_dot_product_attention`` are wrapped to check the mode they run in.

Only calls of the thread that entered the monitor are recorded. Everything is
restored on exit, also when the body raises.

A call's *window* is its batch (from the batch being yielded until the loader
yields the next one or stops) or, without a DataLoader, the time until the same
model is called again from the same line. An *evaluation pass* is a call with
no optimizer step in its window, no backward pass through its output, and that
is not BatchNorm recalibration. *Recalibration* is a call from
``torch.optim.swa_utils.update_bn`` or :func:`bnlint.runtime.recalibrate_batchnorm`,
with a BatchNorm whose momentum is None (cumulative average), or whose output
was already discarded when its window closed (``model(x)`` as a statement, like
``update_bn``); one recalibration call at a source line silences BNL001/BNL002
for that line. A grad-enabled call whose output is still alive, without a
backward yet, waits until the output dies (a backward may come later).

Findings, each located at the user line that called the model (or the export
or functional call):

- BNL001: an evaluation pass ran norm layers with running statistics in
  training mode, or dropout with the whole model in training mode (dropout
  alone in training mode inside an eval model is Monte-Carlo dropout);
- BNL002: an evaluation pass of a model in eval mode with autograd on;
- BNL003: an optimizer step that updates a model whose loss came from it in
  eval mode, after the same model was seen in training mode (a model kept in
  eval on purpose from the start, e.g. to freeze BatchNorm, is not reported);
- BNL005: ``torch.jit.trace``/``torch.export.export``/``torch.onnx.export`` of
  a model with mode-sensitive layers in training mode (for ONNX, as the
  ``training``/``dynamo`` options decide);
- BNL101: running statistics of a norm layer whose parameters are all frozen
  (``requires_grad`` off) changed, outside recalibration;
- BNL201/BNL203: functional dropout (``training=True``) or
  ``scaled_dot_product_attention`` with ``dropout_p > 0`` ran while the
  innermost running module was in eval mode;
- BNL301: evaluation passes read a DataLoader, or a dataset, that also fed
  batches with optimizer steps (a ``random_split`` part is another dataset).

Known limits: an output consumed in the same expression (``model(x).argmax(1)``)
counts as discarded, so such evaluation loops are not reported (precision before
recall); the batch of a call is the most recently yielded one, so batches taken
with ``next(iter(loader))`` inside a training batch count as that batch;
functions imported by name before the monitor started (``from torch.nn.functional
import dropout``) and DataLoader subclasses overriding ``__iter__`` are not seen;
``torch.compile``d models are not supported.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable
from threading import get_ident as _thread_id
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optimizer_hooks
from torch.utils.data import DataLoader

from bnlint.diagnostic import Diagnostic
from bnlint.runtime._layers import (
    NORM,
    common_path,
    describe,
    frozen,
    group,
    kind,
    module_names,
    sensitive,
    sensitive_layers,
    tracks_stats,
)
from bnlint.runtime._records import Batch, Call, LayerEvent, SiteRecord, TrackedIterator
from bnlint.runtime._report import Where, caller, diagnostic

# Functional dropout: (owner, name, code, [(position, keyword, default), ...]); all must be truthy.
_DROPOUT_P = (1, "p", 0.5)
_FUNCTIONAL = (
    (F, "dropout", "BNL201", [(2, "training", True), _DROPOUT_P]),
    (F, "dropout1d", "BNL201", [(2, "training", True), _DROPOUT_P]),
    (F, "dropout2d", "BNL201", [(2, "training", True), _DROPOUT_P]),
    (F, "dropout3d", "BNL201", [(2, "training", True), _DROPOUT_P]),
    (F, "alpha_dropout", "BNL201", [(2, "training", False), _DROPOUT_P]),
    (F, "feature_alpha_dropout", "BNL201", [(2, "training", False), _DROPOUT_P]),
    (torch, "dropout", "BNL201", [(2, "train", False), _DROPOUT_P]),
    (F, "scaled_dot_product_attention", "BNL203", [(4, "dropout_p", 0.0)]),
)
_EXPORTS = (
    (torch.jit, "trace", "torch.jit.trace"),
    (torch.export, "export", "torch.export.export"),
    (torch.onnx, "export", "torch.onnx.export"),
)


def _arg(args: tuple, kwargs: dict, position: int, keyword: str, default: Any) -> Any:
    return args[position] if len(args) > position else kwargs.get(keyword, default)


def _fingerprint(layer: nn.Module) -> Any:
    count = layer._buffers.get("num_batches_tracked")
    return int(count) if count is not None else layer._buffers["running_mean"].clone()


def _changed(before: Any, layer: nn.Module) -> bool:
    after = _fingerprint(layer)
    if isinstance(before, torch.Tensor):
        return not torch.equal(before, after)
    return before != after


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _updates(optimizer: torch.optim.Optimizer, root: nn.Module) -> bool:
    ids = {id(p) for group_ in optimizer.param_groups for p in group_["params"]}
    return any(id(p) in ids for p in root.parameters())


class Monitor(contextlib.ContextDecorator):
    """Context manager and decorator that confirms findings on the live run.

    >>> with Monitor() as monitor:          # doctest: +SKIP
    ...     train(model, loaders)
    >>> for d in monitor.findings(): print(d.path, d.line, d.code, d.message)

    ``limit_batches`` stops every DataLoader iteration after that many batches
    (for a quick confirmation run); ``record_events`` keeps a :class:`LayerEvent`
    per norm/dropout forward pass in :attr:`events` (memory grows with the run).
    Findings accumulate over every ``with`` block (or decorated call) of one
    instance; an instance cannot be entered again while it is active.
    :attr:`sites` maps each user ``(path, line)`` that called a model for an
    evaluation pass, or an export, to a :class:`SiteRecord` of what ran there.
    """

    def __init__(self, *, limit_batches: int | None = None, record_events: bool = False) -> None:
        self.limit_batches = limit_batches
        self.record_events = record_events
        self.events: list[LayerEvent] = []
        self.sites: dict[tuple[str, int], SiteRecord] = {}
        self._found: dict[tuple, Diagnostic] = {}
        # finding -> the line whose recalibration drops it (BNL001, BNL002)
        self._site_bound: dict[tuple, tuple[str, int]] = {}
        self._recal_sites: set[tuple[str, int]] = set()
        self._drift_seen: set[tuple[tuple[str, int], nn.Module]] = set()
        # id(loader or dataset) -> (it, the line of an optimizer step it fed)
        self._train_sources: dict[int, tuple[Any, Where]] = {}
        self._eval_uses: dict[tuple, tuple[Any, Where, str]] = {}
        self._undo: contextlib.ExitStack | None = None
        self._start_run()

    # -- lifecycle -------------------------------------------------------------------------

    def _start_run(self) -> None:
        self._thread = _thread_id()
        self._stack: list[nn.Module] = []
        self._call: Call | None = None
        self._open: list[Call] = []
        self._deferred: list[Call] = []
        self._iterators: list[weakref.ref] = []
        self._prints: dict[nn.Module, Any] = {}
        self._names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._seen_training: weakref.WeakSet = weakref.WeakSet()
        self._steps = 0
        self._last_step = Where("<unknown>", 1)
        self._paused = 0

    def __enter__(self) -> Monitor:
        if self._undo is not None:
            raise RuntimeError("this Monitor is already active")
        self._start_run()
        with contextlib.ExitStack() as undo:
            self._install(undo)
            self._undo = undo.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        undo, self._undo = self._undo, None
        try:
            undo.close()
        finally:
            self._finish()

    def _install(self, undo: contextlib.ExitStack) -> None:
        handles = (
            module_hooks.register_module_forward_pre_hook(self._pre_forward),
            module_hooks.register_module_forward_hook(self._post_forward, always_call=True),
            optimizer_hooks.register_optimizer_step_pre_hook(self._on_step),
        )
        for handle in handles:
            undo.callback(handle.remove)
        _patch(undo, DataLoader, "__iter__", self._tracked_iter(DataLoader.__iter__))
        for owner, name, code, needs in _FUNCTIONAL:
            _patch(undo, owner, name, self._functional(getattr(owner, name), code, needs))
        for owner, name, label in _EXPORTS:
            _patch(undo, owner, name, self._export(getattr(owner, name), label))

    def _finish(self) -> None:
        for ref in list(self._iterators):
            iterator = ref()
            if iterator is not None:
                self._iterator_done(iterator)
        for call in self._open:
            self._close(call, final=True)
        for call in self._deferred:
            self._resolve(call, discarded=False, settled=call.backward or call.outputs_dead())
        self._open, self._deferred, self._stack, self._call = [], [], [], None

    def findings(self) -> list[Diagnostic]:
        """The confirmed findings so far, deduplicated per (code, source line, module), sorted."""
        self._data_findings()
        kept = [
            d
            for key, d in self._found.items()
            if self._site_bound.get(key) not in self._recal_sites
        ]
        return sorted(kept, key=lambda d: d.sort_key)

    # -- module hooks ----------------------------------------------------------------------

    def _listening(self) -> bool:
        return not self._paused and _thread_id() == self._thread

    # The two module hooks run for every module's forward: checks are inlined, no method calls.
    def _pre_forward(self, module: nn.Module, args: Any) -> None:
        if self._paused or _thread_id() != self._thread:
            return
        if not self._stack:
            self._begin(module)
        self._stack.append(module)
        if kind(module) == NORM and module.training and tracks_stats(module):
            if module.momentum is None:
                self._call.recal = True
            if self.record_events or frozen(module):
                self._prints[module] = _fingerprint(module)

    def _post_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._paused or _thread_id() != self._thread or not self._stack:
            return  # not ours, or the module started before the monitor did
        self._stack.pop()
        call = self._call
        layer_kind = kind(module)
        if layer_kind is not None and sensitive(module, layer_kind):
            self._observe(call, module, layer_kind)
        if not self._stack:
            self._end(call, output)

    def _begin(self, root: nn.Module) -> None:
        where, recalibrating = caller()
        self._close_matching(
            lambda c: c.batch is None and c.root is root and c.where.key == where.key
        )
        batch = self._current_batch()
        if root.training:
            self._seen_training.add(root)
        steps = batch.steps if batch is not None else self._steps
        self._call = Call(
            root, where, torch.is_grad_enabled(), root.training, batch, steps, recalibrating
        )

    def _observe(self, call: Call, module: nn.Module, layer_kind: str) -> None:
        call.sensitive = True
        changed = None
        if module in self._prints:
            changed = _changed(self._prints.pop(module), module)
            if changed and frozen(module):
                call.drifted[module] = None
        if module.training:
            call.train_layers[module] = layer_kind
        if self.record_events:
            self._record(call, module, layer_kind, changed)

    def _record(self, call: Call, module: nn.Module, layer_kind: str, changed: bool | None) -> None:
        event = LayerEvent(
            module=self._name(call.root, module),
            model=type(call.root).__name__,
            kind=layer_kind,
            training=module.training,
            grad_enabled=torch.is_grad_enabled(),
            stats_changed=changed,
            loader=call.batch.loader if call.batch else None,
            path=call.where.path,
            line=call.where.line,
        )
        self.events.append(event)

    def _end(self, call: Call, output: Any) -> None:
        self._call = None
        if call.sensitive or _has_parameters(call.root):  # skip parameter-free losses and helpers
            call.watch(output)
            self._open.append(call)

    # -- windows: when is a call's fate known ----------------------------------------------

    def _close_matching(self, match: Callable[[Call], bool]) -> None:
        still_open = []
        for call in self._open:
            if match(call):
                self._close(call, final=False)
            else:
                still_open.append(call)
        self._open = still_open
        self._poll_deferred()

    def _close(self, call: Call, *, final: bool) -> None:
        call.stepped = self._steps > call.steps
        dead = call.outputs_dead()
        if call.grad_outputs and not (call.backward or call.stepped or dead):
            # A backward may still come (losses summed over batches); at the end, nobody knows.
            if final:
                self._resolve(call, discarded=False, settled=False)
            else:
                self._deferred.append(call)
            return
        # At the end of the run a dead output proves nothing: the function holding it returned.
        self._resolve(call, discarded=dead and not final, settled=True)

    def _poll_deferred(self) -> None:
        waiting = []
        for call in self._deferred:
            if call.backward or call.outputs_dead():
                self._resolve(call, discarded=False, settled=True)
            else:
                waiting.append(call)
        self._deferred = waiting

    def _resolve(self, call: Call, *, discarded: bool, settled: bool) -> None:
        # A training call's output is often consumed at once (loss(model(x), y)): not recalibration.
        recalibration = call.recal or (discarded and not (call.backward or call.stepped))
        if recalibration:
            self._recal_sites.add(call.where.key)
        else:
            self._report_drift(call)
        if call.stepped and call.batch is not None:
            self._mark_training(call.batch.loader)
        if settled and not (recalibration or call.stepped or call.backward):
            self._report_evaluation(call)

    # -- DataLoader tracking ---------------------------------------------------------------

    def _tracked_iter(self, original: Callable) -> Callable:
        @functools.wraps(original)
        def __iter__(loader: DataLoader) -> Any:
            iterator = original(loader)
            if not self._listening():
                return iterator
            return TrackedIterator(iterator, loader, self)

        return __iter__

    def _current_batch(self) -> Batch | None:
        while self._iterators:
            iterator = self._iterators[-1]()
            if iterator is not None:
                return iterator.batch
            self._iterators.pop()
        return None

    def _iterator_yielded(self, iterator: TrackedIterator) -> None:
        self._end_batch(iterator)
        iterator.batch = Batch(iterator.loader, self._steps)
        self._forget(iterator)
        self._iterators.append(weakref.ref(iterator))

    def _iterator_done(self, iterator: TrackedIterator) -> None:
        self._end_batch(iterator)
        self._forget(iterator)
        iterator.monitor = None

    def _end_batch(self, iterator: TrackedIterator) -> None:
        batch, iterator.batch = iterator.batch, None
        if batch is not None:
            self._close_matching(lambda c: c.batch is batch)

    def _forget(self, iterator: TrackedIterator) -> None:
        self._iterators = [
            ref for ref in self._iterators if ref() is not None and ref() is not iterator
        ]

    def _mark_training(self, loader: Any) -> None:
        for source in (loader, getattr(loader, "dataset", None)):
            if source is not None:
                self._train_sources.setdefault(id(source), (source, self._last_step))

    # -- optimizer steps -------------------------------------------------------------------

    def _on_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._listening():
            return
        self._steps += 1
        self._last_step = caller()[0]
        for call in self._open:
            if self._trained_in_eval(call, optimizer):
                self._add(
                    "BNL003",
                    call,
                    lambda call=call: (
                        f"{_label(call)} is in eval mode while its loss drives optimizer steps "
                        f"({_at(self._last_step)}) after it trained in training mode earlier: "
                        "nothing switched it back after evaluation; call model.train() at the "
                        "start of each training epoch"
                    ),
                )

    def _trained_in_eval(self, call: Call, optimizer: torch.optim.Optimizer) -> bool:
        return (
            call.backward
            and not call.training
            and call.sensitive
            and call.root in self._seen_training
            and _updates(optimizer, call.root)
        )

    # -- findings --------------------------------------------------------------------------

    def _report_drift(self, call: Call) -> None:
        new = [m for m in call.drifted if (call.where.key, m) not in self._drift_seen]
        if not new:
            return
        self._drift_seen.update((call.where.key, m) for m in new)
        names = self._names_of(call.root)
        universe = [names[m] for m in sensitive_layers(call.root) if kind(m) == NORM]
        for members in group([names[m] for m in new], universe):
            self._add(
                "BNL101",
                call,
                lambda members=members: (
                    f"running statistics of {describe(members, _label(call))} changed "
                    "although its parameters are frozen: put frozen norm layers in eval mode "
                    "(bnlint.runtime.freeze_norm_layers) or use FrozenBatchNorm2d"
                ),
                module=common_path(members),
            )

    def _report_evaluation(self, call: Call) -> None:
        site = self._site(call.where)
        site.evaluations += 1
        site.sensitive_evaluations += call.sensitive
        site.grad_evaluations += call.grad
        layers = call.train_layers
        if any(k == NORM for k in layers.values()) or (call.training and layers):
            # Dropout alone in training mode inside an eval model is Monte-Carlo dropout.
            site.train_mode_evaluations += 1
            self._add("BNL001", call, lambda: self._train_mode_message(call), site_bound=True)
        if call.grad_outputs and not call.training:
            self._add(
                "BNL002",
                call,
                lambda: (
                    f"{_label(call)} ran an evaluation pass with autograd on (no backward, no "
                    "optimizer step): the autograd graph is built for nothing; wrap evaluation in "
                    "torch.no_grad() or torch.inference_mode()"
                ),
                site_bound=True,
            )
        if call.batch is not None:
            key = (call.where.key, id(call.batch.loader), id(call.root))
            self._eval_uses.setdefault(key, (call.batch.loader, call.where, _label(call)))

    def _train_mode_message(self, call: Call) -> str:
        names = self._names_of(call.root)
        universe = [names[m] for m in sensitive_layers(call.root)]
        groups = group([names[m] for m in call.train_layers], universe)
        layers = "; ".join(describe(members, _label(call)) for members in groups)
        grad = "under no_grad" if not call.grad else "with autograd on"
        return (
            f"{_label(call)} ran an evaluation pass ({grad}, no backward, no optimizer step) "
            f"with {layers} in training mode: BatchNorm normalises with batch statistics and "
            "updates its running statistics, dropout stays on; call model.eval() before evaluating"
        )

    def _data_findings(self) -> None:
        for loader, where, label in self._eval_uses.values():
            for source, what in (
                (loader, "the DataLoader"),
                (getattr(loader, "dataset", None), "the dataset"),
            ):
                trained = self._train_sources.get(id(source)) if source is not None else None
                if trained is not None:
                    self._emit(
                        "BNL301",
                        where,
                        f"{label} is evaluated on batches from {what} that also feeds optimizer "
                        f"steps ({_at(trained[1])}): the evaluation measures training data; use "
                        "the validation data",
                        model=label,
                    )
                    break

    def _add(
        self,
        code: str,
        call: Call,
        message: Callable[[], str],
        *,
        module: str = "",
        site_bound: bool = False,
    ) -> None:
        """Record a finding about ``call``; the message is only built the first time."""
        label = _label(call)
        key = (code, call.where.path, call.where.line, module, label)
        if key in self._found:
            return
        self._found[key] = diagnostic(code, call.where, message(), module=module, model=label)
        if site_bound:
            self._site_bound[key] = call.where.key

    def _emit(
        self, code: str, where: Where, message: str, *, module: str = "", model: str = ""
    ) -> None:
        key = (code, where.path, where.line, module, model)
        if key not in self._found:
            self._found[key] = diagnostic(code, where, message, module=module, model=model)

    def _site(self, where: Where) -> SiteRecord:
        site = self.sites.get(where.key)
        if site is None:
            site = self.sites[where.key] = SiteRecord()
        return site

    def _names_of(self, root: nn.Module) -> dict[nn.Module, str]:
        names = self._names.get(root)
        if names is None:
            names = self._names[root] = module_names(root)
        return names

    def _name(self, root: nn.Module, module: nn.Module) -> str:
        names = self._names_of(root)
        if module not in names:  # the model changed shape since it was first named
            names = self._names[root] = module_names(root)
        return names.get(module, type(module).__name__)

    # -- patched functions -----------------------------------------------------------------

    def _functional(self, function: Callable, code: str, needs: list) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if (
                self._stack
                and all(_arg(args, kwargs, *need) for need in needs)
                and self._listening()
            ):
                self._functional_in_eval(code, function.__name__)
            return function(*args, **kwargs)

        return wrapper

    def _functional_in_eval(self, code: str, function: str) -> None:
        module, root = self._stack[-1], self._stack[0]
        if module.training:
            return
        path = self._name(root, module)
        where = caller()[0]
        if code == "BNL201":
            advice = "pass training=self.training"
        else:
            advice = "use dropout_p=p if self.training else 0.0"
        self._emit(
            code,
            where,
            f"{function}() applies dropout inside {path or type(root).__name__} "
            f"({type(module).__name__}) while it is in eval mode: dropout stays on at "
            f"inference; {advice}",
            module=path,
            model=type(root).__name__,
        )

    def _export(self, function: Callable, label: str) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._listening():
                self._check_export(label, args, kwargs)
            self._paused += 1  # the tracing forward passes are not the user's
            try:
                return function(*args, **kwargs)
            finally:
                self._paused -= 1

        return wrapper

    def _check_export(self, label: str, args: tuple, kwargs: dict) -> None:
        model = args[0] if args else kwargs.get("func", kwargs.get("mod", kwargs.get("model")))
        if not isinstance(model, nn.Module):
            return
        layers = sensitive_layers(model)
        if label == "torch.onnx.export":
            training = _onnx_exported_training(layers, kwargs)
        else:
            training = [m for m in layers if m.training]
        where = caller()[0]
        site = self._site(where)
        site.exports += 1
        if not training:
            return
        site.train_mode_exports += 1
        names, model_label = module_names(model), type(model).__name__
        groups = group([names[m] for m in training], [names[m] for m in layers])
        subject = "; ".join(describe(members, model_label) for members in groups)
        self._emit(
            "BNL005",
            where,
            f"{label} exports {model_label} with {subject} in training mode: dropout and batch "
            "statistics are baked into the exported graph; call model.eval() before exporting",
            model=model_label,
        )


def _onnx_exported_training(layers: dict[nn.Module, str], kwargs: dict) -> list[nn.Module]:
    """The layers ``torch.onnx.export`` exports in training mode, given its options."""
    mode = kwargs.get("training", torch.onnx.TrainingMode.EVAL)
    if mode == torch.onnx.TrainingMode.TRAINING:
        return list(layers)
    # Only the legacy exporter honours training=EVAL; the default dynamo one keeps the model's mode.
    if mode == torch.onnx.TrainingMode.EVAL and kwargs.get("dynamo", True) is False:
        return []
    return [m for m in layers if m.training]


def _patch(undo: contextlib.ExitStack, owner: Any, name: str, replacement: Any) -> None:
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, replacement)
    undo.callback(setattr, owner, name, original)


def _label(call: Call) -> str:
    return type(call.root).__name__


def _at(where: Where) -> str:
    return f"{where.path}:{where.line}"
