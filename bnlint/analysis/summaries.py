"""Function summaries: what a function needs from, and does to, its caller's models.

A summary is plain data (picklable, JSON-able) so the project index can carry
it from one file to the others. Keys are dotted names rooted at a parameter
(``model``, ``self.model``); a key rooted elsewhere is a module global, which
only callers in the same file can map.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import libcst as cst

from bnlint.analysis.calls import has_star_args
from bnlint.analysis.state import Grad, Mode


class Need(str, enum.Enum):
    EVAL = "eval"  # an evaluation loop runs the value in the caller's mode (BNL001)
    NO_GRAD = "no_grad"  # an evaluation loop runs with the caller's grad flag (BNL002)
    EXPORT = "export"  # an exporter records the value in the caller's mode (BNL005)
    TRAIN = "train"  # a training step runs the value in the caller's mode (BNL003)


@dataclass(frozen=True)
class Requirement:
    need: Need
    key: str  # callee-side key ("" for NO_GRAD about a model of the callee's own)
    where: str  # the function with the loop or export: ``engine.evaluate``
    detail: str  # "evaluation loop over `loader`"
    origin_key: str  # ``key`` in that function (requirements pass through callers)

    def rekeyed(self, key: str) -> Requirement:
        return Requirement(self.need, key, self.where, self.detail, self.origin_key)


@dataclass(frozen=True)
class Summary:
    params: tuple[str, ...]  # positional parameters in order, the instance first
    keyword_only: tuple[str, ...] = ()
    bound_method: bool = False  # called on an instance, which binds params[0]
    requirements: tuple[Requirement, ...] = ()
    effects: tuple[tuple[str, Mode], ...] = ()  # key -> modes at exit
    grad_effect: Grad | None = None  # the grad flag at exit, if the function sets it
    trains: bool = False  # runs a training step
    calls: tuple[str, ...] = ()  # keys called like a model outside any loop
    returns: Mode | None = None  # the mode of a model it returns, built inside
    returns_key: str | None = None  # the parameter it returns (``return model``)
    # Parameters it stores on the instance: (``self.model``, ``model``).
    stores: tuple[tuple[str, str], ...] = ()
    # Of ``calls``, those it makes under its own ``torch.no_grad()``.
    calls_without_grad: frozenset[str] = frozenset()

    @property
    def is_trivial(self) -> bool:
        return not (
            self.requirements
            or self.effects
            or self.grad_effect is not None
            or self.trains
            or self.calls
            or self.returns is not None
            or self.returns_key is not None
            or self.stores
        )

    @property
    def makes_events(self) -> bool:
        """Can calling it create something a rule judges in any caller: a need
        or a training step? (Effects, stores and returned models only matter to
        callers that already evaluate, train, export or turn autograd off.)"""
        return bool(self.requirements or self.trains)

    def roots(self) -> frozenset[str]:
        return frozenset((*self.params, *self.keyword_only))

    def is_parameter_key(self, key: str) -> bool:
        return key.split(".", 1)[0] in self.roots()

    def for_other_files(self) -> Summary:
        """Without module globals, which other files cannot name."""
        keep = self.is_parameter_key
        return Summary(
            self.params,
            self.keyword_only,
            self.bound_method,
            tuple(r for r in self.requirements if not r.key or keep(r.key)),
            tuple((k, m) for k, m in self.effects if keep(k)),
            self.grad_effect,
            self.trains,
            tuple(k for k in self.calls if keep(k)),
            self.returns,
            self.returns_key if self.returns_key and keep(self.returns_key) else None,
            self.stores,
            frozenset(k for k in self.calls_without_grad if keep(k)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "params": list(self.params),
            "keyword_only": list(self.keyword_only),
            "bound_method": self.bound_method,
            "requirements": [
                [r.need.value, r.key, r.where, r.detail, r.origin_key] for r in self.requirements
            ],
            "effects": [[k, int(m)] for k, m in self.effects],
            "grad_effect": None if self.grad_effect is None else int(self.grad_effect),
            "trains": self.trains,
            "calls": list(self.calls),
            "returns": None if self.returns is None else int(self.returns),
            "returns_key": self.returns_key,
            "stores": [list(pair) for pair in self.stores],
            "calls_without_grad": sorted(self.calls_without_grad),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        return cls(
            tuple(data["params"]),
            tuple(data["keyword_only"]),
            data["bound_method"],
            tuple(Requirement(Need(need), *rest) for need, *rest in data["requirements"]),
            tuple((k, Mode(m)) for k, m in data["effects"]),
            None if data["grad_effect"] is None else Grad(data["grad_effect"]),
            data["trains"],
            tuple(data["calls"]),
            None if data["returns"] is None else Mode(data["returns"]),
            data["returns_key"],
            tuple((k, v) for k, v in data["stores"]),
            frozenset(data["calls_without_grad"]),
        )


def bind_arguments(
    summary: Summary, call: cst.Call, receiver: cst.BaseExpression | None
) -> dict[str, cst.BaseExpression] | None:
    """Which caller expression each parameter gets, as Python binds them; None if
    ``*args``/``**kwargs`` make that unknowable."""
    if has_star_args(call):
        return None
    params = list(summary.params)
    bound: dict[str, cst.BaseExpression] = {}
    if summary.bound_method:
        if receiver is None or not params:
            return None
        bound[params.pop(0)] = receiver
    positional = [arg for arg in call.args if arg.keyword is None]
    for name, arg in zip(params, positional, strict=False):
        bound[name] = arg.value
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value in summary.roots():
            bound[arg.keyword.value] = arg.value
    return bound


def substitute(effect: Mode, before: Mode) -> Mode:
    """The caller's modes after a callee leaves ``effect`` (which may say CALLER:
    unchanged on some path)."""
    if Mode.CALLER in effect:
        return (effect & ~Mode.CALLER) | before
    return effect


def substitute_grad(effect: Grad, before: Grad) -> Grad:
    if Grad.CALLER in effect:
        return (effect & ~Grad.CALLER) | before
    return effect
