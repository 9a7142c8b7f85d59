"""Source order without positions: ``walk.children`` yields children in the
order they are written (decorators before the ``def``, ``a`` before ``if`` in
``a if c else b``) and ``SourceOrder`` agrees with the positions."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest
from libcst.metadata import CodePosition

from bnlint.analysis.positions import Positions, SourceOrder
from bnlint.analysis.walk import children, descendants

CODE = textwrap.dedent(
    """\
    @torch.no_grad()
    def evaluate(model, loader, *, device="cpu") -> float:
        total = 0
        try:
            first = model(loader[0]) if loader else None
        except (ValueError, KeyError) as error:
            raise error
        for x in loader:
            total += model(x).item(); step()
        match total:
            case 0 if first is None:
                pass
        return total


    @register(name="net")
    class Net(nn.Module, metaclass=Meta):
        def forward(self, x):
            return self.fc(x)
    """
)


def line_and_column(position: CodePosition) -> tuple[int, int]:
    return position.line, position.column


@pytest.fixture(scope="module")
def module() -> cst.Module:
    return cst.parse_module(CODE)


def test_children_come_in_the_order_they_are_written(module: cst.Module) -> None:
    positions = Positions(module)
    for node in descendants(module):
        starts = [positions[child].start for child in children(node)]
        assert starts == sorted(starts, key=line_and_column), type(node).__name__


def test_source_order_agrees_with_the_positions(module: cst.Module) -> None:
    positions, order = Positions(module), SourceOrder(module)
    function = module.body[0]
    calls = [n for n in descendants(function) if isinstance(n, cst.Call)]
    statements = [n for n in descendants(function) if isinstance(n, cst.BaseSmallStatement)]
    assert len(calls) > 4 and len(statements) > 4
    for call in calls:
        for statement in statements:
            if call in set(descendants(statement)):
                continue
            ends_before = line_and_column(positions[statement].end) <= line_and_column(
                positions[call].start
            )
            after = order.starts_after(call, statement, within=function)
            assert after == ends_before, (cst.Module([]).code_for_node(call), statement)


def test_nodes_outside_the_subtree_are_ordered_over_the_whole_file(module: cst.Module) -> None:
    order = SourceOrder(module)
    evaluate, net = module.body[0], module.body[1]
    assert order.starts_after(net, evaluate, within=evaluate)
    assert not order.starts_after(evaluate, net, within=net)
