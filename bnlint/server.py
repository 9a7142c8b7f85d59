"""``bnlint server``: a language server for editors (LSP over stdio, with pygls).

Diagnostics are published when a Python document is opened, changed or saved,
from the editor's text rather than the file on disk, with the configuration
the command line would use for the document's path (the nearest
``pyproject.toml`` with a ``[tool.bnlint]`` table); closing a document clears
them. Each fix is offered as a quick-fix code action whose workspace edit
applies the fix's edits; an unsafe fix says so in its title and is never the
preferred action.

Positions: bnlint counts 1-based lines and code-point columns; LSP counts
0-based lines and, unless the client and pygls agree on another encoding,
UTF-16 code units. pygls' position codec does the conversion.

pygls is an optional dependency (``pip install 'bnlint[server]'``); this module
is only imported by ``bnlint server``.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import PositionCodec

from bnlint import __version__
from bnlint.config import Config, ConfigError, find_pyproject, load_config
from bnlint.diagnostic import Diagnostic, Fix, Severity
from bnlint.engine import lint_source, package_of
from bnlint.output.sarif import help_uri
from bnlint.source import line_starts, line_text

PYTHON_SUFFIXES = (".py", ".pyi")


def build_server() -> LanguageServer:
    server = LanguageServer("bnlint", __version__)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        _send(ls, params.text_document.uri, [], None)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: LanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        document = ls.workspace.get_text_document(params.text_document.uri)
        converter = Converter(document.source, ls.workspace.position_codec)
        actions = []
        for diagnostic in lint_document(ls, document) or []:
            shown = converter.diagnostic(diagnostic)
            if diagnostic.fix is not None and _overlaps(shown.range, params.range):
                actions.append(converter.code_action(diagnostic.fix, shown, document.uri))
        return actions

    return server


def publish(ls: LanguageServer, uri: str) -> None:
    document = ls.workspace.get_text_document(uri)
    diagnostics = lint_document(ls, document)
    if diagnostics is None:
        return
    converter = Converter(document.source, ls.workspace.position_codec)
    _send(ls, uri, [converter.diagnostic(d) for d in diagnostics], document.version)


def _send(
    ls: LanguageServer, uri: str, diagnostics: list[types.Diagnostic], version: int | None
) -> None:
    ls.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
    )


def lint_document(ls: LanguageServer, document: TextDocument) -> list[Diagnostic] | None:
    """The document's diagnostics; None for a document bnlint does not lint, or
    when its configuration is broken (logged, and its old diagnostics cleared)."""
    path = Path(document.path)
    if document.language_id != "python" and path.suffix not in PYTHON_SUFFIXES:
        return None
    try:
        config = config_for(path)
    except ConfigError as error:
        ls.window_log_message(
            types.LogMessageParams(type=types.MessageType.Error, message=f"bnlint: {error}")
        )
        _send(ls, document.uri, [], document.version)
        return None
    return lint_source(document.source, str(path), config, package_of(path))


def config_for(path: Path) -> Config:
    """The configuration the command line would find for ``path``."""
    start = path if path.is_absolute() else Path.cwd()
    return load_config(find_pyproject(start))


class Converter:
    """bnlint positions, diagnostics and fixes as LSP values, for one document text."""

    def __init__(self, text: str, codec: PositionCodec) -> None:
        self.text, self.codec = text, codec
        self.starts = line_starts(text)

    def position(self, line: int, column: int) -> types.Position:
        if line > len(self.starts):  # the end of the text
            return types.Position(line=line - 1, character=0)
        before = line_text(self.text, self.starts, line)[: column - 1]
        return types.Position(line=line - 1, character=self.codec.client_num_units(before))

    def range(self, line: int, column: int, end_line: int, end_column: int) -> types.Range:
        return types.Range(self.position(line, column), self.position(end_line, end_column))

    def diagnostic(self, diagnostic: Diagnostic) -> types.Diagnostic:
        d = diagnostic
        return types.Diagnostic(
            range=self.range(d.line, d.column, d.end_line, d.end_column),
            message=d.message,
            severity=(
                types.DiagnosticSeverity.Error
                if d.severity is Severity.ERROR
                else types.DiagnosticSeverity.Warning
            ),
            code=d.code,
            code_description=types.CodeDescription(href=help_uri(d.code)),
            source="bnlint",
        )

    def code_action(self, fix: Fix, shown: types.Diagnostic, uri: str) -> types.CodeAction:
        """``fix`` as a quick fix of ``shown`` (the diagnostic as the editor has it)."""
        title = f"{shown.code}: {fix.description or 'apply the fix'}"
        edits = [
            types.TextEdit(
                range=self.range(e.line, e.column, e.end_line, e.end_column), new_text=e.content
            )
            for e in fix.edits
        ]
        return types.CodeAction(
            title=title if fix.safe else f"{title} (unsafe)",
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[shown],
            is_preferred=fix.safe,
            edit=types.WorkspaceEdit(changes={uri: edits}),
        )


def _overlaps(a: types.Range, b: types.Range) -> bool:
    def key(position: types.Position) -> tuple[int, int]:
        return (position.line, position.character)

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)
