"""BNL901: the file cannot be parsed. The engine reports it; there is no query."""

from __future__ import annotations

from bnlint.rules.base import Documented


class SyntaxErrorInFile(Documented):
    """
    ## What it does
    Reports a file, or a notebook cell, that bnlint cannot parse, at the
    position the parser gives and with Python's own message where Python has
    one. The other files of the run are still linted.

    ## Why is this bad?
    Nothing in a file that cannot be parsed is checked, so its mistakes go
    unreported, and Python will refuse the file as well when it imports or runs
    it. The usual causes in training code: merge conflict markers left behind
    (`<<<<<<< HEAD`), a Python 2 `print` statement in an old script, an unclosed
    bracket in a long `DataLoader(...)` call, tabs and spaces mixed in one
    block, a notebook cell holding shell syntax without its `!` (`git clone ...`).

    ## Known problems
    bnlint's parser (LibCST) knows the grammar of newer Pythons than the one
    running bnlint: code written for Python 3.12 (f-strings that reuse their
    quotes, `type` aliases, generic functions) is read, not reported, on 3.11.
    In notebooks, IPython's magics (`%time`, `%%capture`), shell escapes
    (`!pip install`) and automagics (`pip install` without `%`) are understood
    and are not syntax errors, and a cell indented as a whole runs as IPython
    runs it, with its first line's indentation taken off every line.

    ## Fix safety
    There is no fix: only the author knows what the code was meant to say.
    """

    code = "BNL901"
    name = "syntax-error"
    summary = "the file or notebook cell cannot be parsed"
