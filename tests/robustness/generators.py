"""Hypothesis strategies for PyTorch training code, built from the blocks the
rules look at: model classes calling F.dropout / F.batch_norm /
scaled_dot_product_attention / stochastic_depth, train and eval loops, bare
``model.eval`` and ``with torch.no_grad:``, misspelt ``requires_grad``,
loaders and transforms, noqa comments; then written out with any newline,
indentation, BOM or coding cookie a real file may have.

A program is a list of ``(depth, text)`` lines, so the layout is chosen last.
"""

from __future__ import annotations

from hypothesis import strategies as st

Lines = list[tuple[int, str]]

BASE_IMPORTS = ["import torch", "from torch import nn", "import torch.nn.functional as F"]
IMPORTS = [
    "import torch",
    "import torch.nn as nn",
    "from torch import nn",
    "import torch.nn.functional as F",
    "from torch.nn import functional as F",
    "from torch.nn.functional import dropout, scaled_dot_product_attention",
    "from torchvision.ops import stochastic_depth",
    "import torchvision.transforms as T",
    "from torch.utils.data import DataLoader",
    "from torch.optim.swa_utils import AveragedModel, update_bn",
]
MODEL_NAMES = ["model", "net", "self.model", "student", "backbone", "m"]
LOADERS = ["train_loader", "val_loader", "test_loader", "loader", "loaders['val']"]
NOQA = ["", "", "", "  # noqa", "  # noqa: BNL004", "  # NOQA:BNL201,BNL004", "  # noqa: E501"]
MODE_SWITCHES = [
    "{m}.eval()",
    "{m}.eval",
    "{m}.train()",
    "{m}.train",
    "{m}.train(False)",
    "{m}.eval().to(device)",
    "torch.no_grad",
]
GRAD_CONTEXTS = [
    "with torch.no_grad():",
    "with torch.no_grad:",
    "with torch.inference_mode():",
    "with torch.inference_mode:",
    "with torch.enable_grad():",
    "with torch.set_grad_enabled(False):",
    "if True:",
]
REQUIRES_GRAD = [
    "{p}.requires_grad = False",
    "{p}.require_grad = False",
    "{p}.requires_grad_ = False",
    "{p}.requieres_grad = True",
    "{p}.required_grad = False",
    'setattr({p}, "require_grad", False)',
    "{p}.requires_grad_(False)",
]
DROPOUT_CALLS = [
    "F.dropout({x}, {p})",
    "F.dropout({x}, p={p}, training=self.training)",
    "F.dropout({x}, {p}, True)",
    "F.dropout2d({x}, {p})",
    "F.alpha_dropout({x}, p={p}, training=False)",
    "torch.dropout({x}, {p}, True)",
    "dropout({x}, {p})",
    "nn.functional.dropout(\n{x},\n{p},\n)",
]
BATCH_NORM_CALLS = [
    "F.batch_norm({x}, self.mean, self.var, training=True)",
    "F.batch_norm({x}, self.mean, self.var, None, None, True)",
    "F.batch_norm({x}, self.mean, self.var, training=self.training)",
    "F.batch_norm(\n{x},\nself.mean,\nself.var,\ntraining=True,\n)",
]
ATTENTION_CALLS = [
    "F.scaled_dot_product_attention(q, k, v, dropout_p={p})",
    "F.scaled_dot_product_attention(q, k, v, dropout_p=self.p)",
    "F.scaled_dot_product_attention(q, k, v, None, self.p)",
    "F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)",
    "scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=self.drop, is_causal=True)",
]
DEPTH_CALLS = [
    'stochastic_depth({x}, {p}, "row")',
    'stochastic_depth({x}, {p}, "batch", training=self.training)',
    "drop_path({x}, {p})",
    "drop_path({x}, {p}, self.training)",
]
RATES = ["0.1", "0.0", "0", "self.p", "p", "self.drop_rate", "cfg.dropout"]
STATEMENTS = ["x = self.fc(x)", "x = x.relu()", "pass", "x = x + 1", "return x", "del q"]


def _fill(template: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda text, x, p: text.format(x=x, p=p),
        template,
        st.sampled_from(["x", "h", "self.fc(x)"]),
        st.sampled_from(RATES),
    )


FUNCTIONAL_CALL = _fill(
    st.sampled_from(DROPOUT_CALLS + BATCH_NORM_CALLS + ATTENTION_CALLS + DEPTH_CALLS)
)


def _call_lines(call: str, target: str, depth: int, noqa: str) -> Lines:
    """``target = call``, a multi-line call laid out one argument per line."""
    head, *rest = call.split("\n")
    if not rest:
        return [(depth, f"{target} = {call}{noqa}")]
    inner = [(depth + 1, line) for line in rest[:-1]]
    return [(depth, f"{target} = {head}"), *inner, (depth, f"{rest[-1]}{noqa}")]


@st.composite
def method_body(draw: st.DrawFn, depth: int) -> Lines:
    lines: Lines = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["call", "call", "branch", "early", "plain"]))
        noqa = draw(st.sampled_from(NOQA))
        if kind == "call":
            lines += _call_lines(draw(FUNCTIONAL_CALL), "x", depth, noqa)
        elif kind == "branch":
            test = draw(st.sampled_from(["self.training", "not self.training", "self.flag"]))
            lines.append((depth, f"if {test}:"))
            lines += _call_lines(draw(FUNCTIONAL_CALL), "x", depth + 1, noqa)
        elif kind == "early":
            lines += [(depth, "if not self.training:"), (depth + 1, "return x")]
        else:
            lines.append((depth, draw(st.sampled_from(STATEMENTS[:-2]))))
    lines.append((depth, "return x"))
    return lines


@st.composite
def model_class(draw: st.DrawFn) -> Lines:
    name = draw(st.sampled_from(["Block", "Head", "Attention", "Net"]))
    base = draw(st.sampled_from(["nn.Module", "torch.nn.Module", "Block", "object"]))
    lines: Lines = [
        (0, f"class {name}({base}):"),
        (1, "def __init__(self, p=0.1):"),
        (2, "super().__init__()"),
        (2, "self.p = p"),
        (2, "self.fc = nn.Linear(8, 8)"),
    ]
    if draw(st.booleans()):
        lines.append((2, f"self.bn = nn.BatchNorm1d(8, track_running_stats={draw(st.booleans())})"))
    if draw(st.booleans()):
        lines += [(2, "for p in self.parameters():"), (3, draw(_grad_line("p")))]
    lines.append((0, ""))
    methods = st.lists(
        st.sampled_from(["forward", "helper", "training_step"]), min_size=1, max_size=2
    )
    for method in draw(methods):
        if draw(st.booleans()):
            lines.append((1, draw(st.sampled_from(["@torch.no_grad()", "@staticmethod"]))))
        lines.append((1, f"def {method}(self, x, q=None, k=None, v=None):"))
        lines += draw(method_body(2))
    return lines


def _grad_line(target: str) -> st.SearchStrategy[str]:
    return st.builds(
        lambda text, noqa: text.format(p=target) + noqa,
        st.sampled_from(REQUIRES_GRAD),
        st.sampled_from(NOQA),
    )


@st.composite
def loop(draw: st.DrawFn, depth: int) -> Lines:
    model = draw(st.sampled_from(MODEL_NAMES))
    lines: Lines = []
    if draw(st.booleans()):
        switch = draw(st.sampled_from(MODE_SWITCHES)).format(m=model)
        lines.append((depth, switch + draw(st.sampled_from(NOQA))))
    context = draw(st.sampled_from(GRAD_CONTEXTS))
    lines.append((depth, context))
    loader = draw(st.sampled_from(LOADERS))
    lines.append((depth + 1, f"for x, y in {loader}:"))
    lines.append((depth + 2, f"out = {model}(x)"))
    if draw(st.booleans()):
        lines += [(depth + 2, "loss = criterion(out, y)"), (depth + 2, "loss.backward()")]
        lines.append((depth + 2, "optimizer.step()"))
    if draw(st.booleans()):
        lines.append((depth + 1, draw(_grad_line(f"{model}.fc.weight"))))
    return lines


@st.composite
def script_block(draw: st.DrawFn) -> Lines:
    kind = draw(st.sampled_from(["loop", "function", "data", "swa", "freeze"]))
    if kind == "loop":
        return draw(loop(0))
    if kind == "function":
        name = draw(st.sampled_from(["evaluate", "validate", "train_one_epoch", "predict"]))
        return [(0, f"def {name}(model, loader):"), *draw(loop(1)), (1, "return out"), (0, "")]
    if kind == "data":
        split = draw(st.sampled_from(["train", "val", "test"]))
        transform = draw(st.sampled_from(["train_transform", "T.RandomCrop(32)", "eval_tf"]))
        batch = draw(st.sampled_from(["1", "2", "64", "batch_size"]))
        return [
            (0, f"{split}_set = Dataset(root, split={split!r}, transform={transform})"),
            (0, f"{split}_loader = DataLoader({split}_set, batch_size={batch})"),
        ]
    if kind == "swa":
        return [(0, "swa_model = AveragedModel(model)"), (0, "swa_model.update_parameters(model)")]
    return [
        (0, "for module in model.modules():"),
        (1, "if isinstance(module, nn.BatchNorm2d):"),
        (2, draw(_grad_line("module"))),
        (2, "module.track_running_stats = False"),
    ]


@st.composite
def training_program(draw: st.DrawFn) -> Lines:
    # torch, nn and F are there most of the time, as in real training code.
    imports = draw(st.lists(st.sampled_from(IMPORTS), max_size=4))
    if draw(st.integers(0, 9)):
        imports = [
            "import torch",
            "from torch import nn",
            "import torch.nn.functional as F",
            *imports,
        ]
    lines: Lines = [(0, text) for text in imports]
    lines.append((0, ""))
    blocks = draw(st.lists(st.one_of(model_class(), script_block()), min_size=1, max_size=5))
    for block in blocks:
        lines += [*block, (0, "")]
    return lines


@st.composite
def layout(draw: st.DrawFn, lines: Lines) -> bytes:
    """Write ``lines`` as a file: newline style, indentation unit, trailing
    spaces and form feeds, final newline, BOM or Latin-1 cookie."""
    newline = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    unit = draw(st.sampled_from(["    ", "    ", "  ", "\t", "mixed"]))
    rendered = []
    for depth, text in lines:
        indent = ("\t" if depth % 2 else "        ") * depth if unit == "mixed" else unit * depth
        # Form feeds where Python allows them: before code at column 0 (LibCST
        # drops those, and bnlint then offers no fixes) and on blank lines.
        feed = "\f" if draw(st.integers(0, 40)) == 0 else ""
        prefix = feed if depth == 0 else ""
        suffix = " " if draw(st.integers(0, 20)) == 0 else ""
        rendered.append(f"{prefix}{indent}{text}{suffix}" if text else feed)
    body = newline.join(rendered) + (newline if draw(st.booleans()) else "")
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1"]))
    if encoding == "latin-1":
        body = f"# -*- coding: latin-1 -*-{newline}# caf\xe9, na\xefve{newline}{body}"
    return body.encode(encoding)


training_files = training_program().flatmap(layout)
