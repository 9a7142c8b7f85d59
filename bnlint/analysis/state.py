"""The abstract state the mode analysis carries along each path of a function.

For every tracked value (``model``, ``self.model``, ``model.module``) the state
holds the set of modes it may be in, and for the whole path whether autograd
may be on or off. Sets, not single values: joining a path where ``model`` is
in training mode with one where it is in eval mode gives ``{TRAIN, EVAL}``,
which rules read as "unknown" (it is neither) while BNL003 can still see that
eval mode is possible. ``CALLER`` stands for "whatever the caller passed in"
(parameters at function entry, resolved later with the caller's state) and
``UNKNOWN`` for anything the analysis cannot follow.

A value is named by its dotted key. ``model.backbone`` inherits the mode of
``model`` unless set on its own, because ``.eval()`` and ``.train()`` recurse
into sub-modules. Aliases (``net = model.cuda()``, ``model = DDP(net)``) make
two keys name one module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import libcst as cst


class Mode(enum.IntFlag):
    TRAIN = 1
    EVAL = 2
    CALLER = 4
    UNKNOWN = 8


class Grad(enum.IntFlag):
    ON = 1
    OFF = 2
    CALLER = 4
    UNKNOWN = 8


@dataclass(frozen=True)
class ModeFact:
    """The modes a value may be in. ``switch`` is the call that last put it in
    training mode (``model.train()`` or a helper that does it) when no training
    step has run since: training mode set on purpose before inference, which
    is BNL006's business rather than BNL001's."""

    modes: Mode
    switch: cst.Call | None = None

    @property
    def is_train(self) -> bool:
        return self.modes is Mode.TRAIN

    @property
    def is_eval(self) -> bool:
        return self.modes is Mode.EVAL

    @property
    def from_caller(self) -> bool:
        return self.modes is Mode.CALLER

    def join(self, other: ModeFact) -> ModeFact:
        if other is self:  # most facts are the same on both paths
            return self
        switch = self.switch if self.switch is other.switch else None
        return ModeFact(self.modes | other.modes, switch)


UNKNOWN_FACT = ModeFact(Mode.UNKNOWN)


def is_under(key: str, prefix: str) -> bool:
    """``model.backbone`` is under ``model``; ``model_ema`` is not."""
    return key == prefix or key.startswith(prefix + ".")


def prefixes(key: str) -> list[str]:
    """``a.b.c`` -> ``["a.b.c", "a.b", "a"]``: longest first."""
    found = [key]
    end = key.rfind(".")
    while end != -1:
        found.append(key[:end])
        end = key.rfind(".", 0, end)
    return found


class State:
    """Modes of tracked values, their aliases, and the grad flag, on one path."""

    __slots__ = ("aliases", "grad", "modes")

    def __init__(
        self,
        modes: dict[str, ModeFact] | None = None,
        aliases: dict[str, str] | None = None,
        grad: Grad = Grad.ON,
    ) -> None:
        self.modes = modes or {}
        self.aliases = aliases or {}
        self.grad = grad

    def copy(self) -> State:
        return State(dict(self.modes), dict(self.aliases), self.grad)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, State)
            and self.grad == other.grad
            and self.modes == other.modes
            and self.aliases == other.aliases
        )

    __hash__ = None  # type: ignore[assignment]

    # -- reading ----------------------------------------------------------------

    def canonical(self, key: str) -> str:
        """``key`` with its longest aliased prefix replaced by what it aliases."""
        if not self.aliases:
            return key
        for _ in range(8):  # alias chains are short; a cycle must not hang us
            for prefix in prefixes(key):
                target = self.aliases.get(prefix)
                if target is not None:
                    key = target + key[len(prefix) :]
                    break
            else:
                return key
        return key

    def fact(self, key: str) -> ModeFact | None:
        """The modes of ``key`` (inherited from the nearest tracked parent), or
        None if it is not tracked."""
        owner = self.owner(key)
        return None if owner is None else self.modes[owner]

    def owner(self, key: str) -> str | None:
        """The tracked key whose modes ``key`` has: itself or its nearest parent."""
        for prefix in prefixes(self.canonical(key)):
            if prefix in self.modes:
                return prefix
        return None

    def tracked_keys_under(self, key: str) -> list[str]:
        canonical = self.canonical(key)
        return [k for k in self.modes if is_under(k, canonical)]

    # -- writing ----------------------------------------------------------------

    def set_mode(self, key: str, fact: ModeFact) -> None:
        """``key.eval()``/``key.train()``: the value and all its sub-modules.
        A parent that was tracked is now partly in another mode."""
        canonical = self.canonical(key)
        for k in [k for k in self.modes if k.startswith(canonical + ".")]:
            del self.modes[k]
        self.modes[canonical] = fact
        for parent in prefixes(canonical)[1:]:
            old = self.modes.get(parent)
            if old is not None:
                self.modes[parent] = ModeFact(old.modes | fact.modes | Mode.UNKNOWN)

    def forget(self, key: str) -> None:
        """``key`` is bound to something new: drop what was known under the name.
        Names aliased to the old value keep its modes."""
        for alias, target in list(self.aliases.items()):
            if is_under(target, key) and not is_under(alias, key):
                old = self.fact(alias)
                del self.aliases[alias]
                if old is not None:
                    self.modes[alias] = old
        for k in [k for k in self.aliases if is_under(k, key)]:
            del self.aliases[k]
        for k in [k for k in self.modes if is_under(k, key)]:
            del self.modes[k]

    def alias(self, key: str, target: str) -> None:
        canonical = self.canonical(target)
        if canonical != key:
            self.aliases[key] = canonical

    def after_training_step(self) -> None:
        """Training ran: training mode is no longer a deliberate inference setting."""
        for key, fact in self.modes.items():
            if fact.switch is not None:
                self.modes[key] = ModeFact(fact.modes)


def join(a: State | None, b: State | None) -> State | None:
    """The state after two paths meet; None is a path that does not get here."""
    if a is None:
        return b
    if b is None:
        return a
    if a is b:
        return a
    modes = {}
    for key in a.modes.keys() | b.modes.keys():
        left, right = a.fact(key), b.fact(key)
        left = left if left is not None else UNKNOWN_FACT
        right = right if right is not None else UNKNOWN_FACT
        modes[key] = left.join(right)
    aliases = {k: v for k, v in a.aliases.items() if b.aliases.get(k) == v}
    return State(modes, aliases, a.grad | b.grad)


def join_all(states: list[State | None]) -> State | None:
    result = None
    for state in states:
        result = join(result, state)
    return result
