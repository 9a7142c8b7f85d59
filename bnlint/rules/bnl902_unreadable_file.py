"""BNL902: the file cannot be read or decoded. The engine reports it; there is no query."""

from __future__ import annotations

from bnlint.rules.base import Documented


class UnreadableFile(Documented):
    """
    ## What it does
    Reports a file that bnlint was asked to lint but cannot read as Python
    source: a permission error, a broken symbolic link, bytes that are not
    valid in the file's encoding (UTF-8 unless a coding cookie says otherwise),
    binary content saved under a `.py` name, or a notebook whose JSON is
    broken or is not a notebook. The other files of the run are still linted,
    and the file itself is never written.

    ## Why is this bad?
    Nothing in the file is checked. Python refuses the same file when it
    imports it, and Jupyter cannot open the broken notebook: most often it is a
    file saved in a legacy encoding (Latin-1 comments), a notebook cut short
    by a crash or a failed merge, or a checkpoint that got a `.py` name.

    ## Known problems
    A file that Python would decode is read the same way: a coding cookie
    (`# -*- coding: latin-1 -*-`) and a UTF-8 byte order mark are honoured.

    ## Fix safety
    There is no fix: bnlint does not guess an encoding or repair a notebook.
    """

    code = "BNL902"
    name = "unreadable-file"
    summary = "the file cannot be read or decoded"
