"""The command line: ``bnlint [check] PATHS``, ``bnlint rules``, ``bnlint explain CODE``,
``bnlint clean`` (delete the result cache), ``bnlint server`` (the language server).

Exit codes: 0 no problems, 1 problems (or, with --diff, changes to make),
2 a usage or configuration error, or a bug in bnlint, 130 interrupted (Ctrl-C)
while fixing. A file ``--fix`` could not write is named on stderr with the
reason, and keeps its findings (exit 1).
"""

from __future__ import annotations

import difflib
import gc
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click

from bnlint import __version__
from bnlint.analysis.project import ProjectIndex
from bnlint.cache import CACHE_DIR_NAME, clear_cache, default_cache_dir, open_cache
from bnlint.config import Config, ConfigError, apply_settings, find_pyproject, load_config
from bnlint.diagnostic import Diagnostic
from bnlint.discovery import discover
from bnlint.engine import FileResult, input_diagnostic, lint_files, lint_source, package_of
from bnlint.fixer import FixOutcome, fix_text
from bnlint.notebook import fix_notebook, is_notebook, lint_notebook
from bnlint.output import Report, formatters
from bnlint.output.text import summary
from bnlint.rules import DOCUMENTED, DOCUMENTED_BY_CODE
from bnlint.source import SourceFile, UnreadableSource, decode_source, write_fixed

EXIT_CLEAN, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
# Rule examples are the fixture files of a source checkout; an installed wheel
# has none, and `explain` then prints the documentation alone.
SOURCE_TREE = Path(__file__).resolve().parent.parent
FIXTURES = SOURCE_TREE / "fixtures"


def fail(message: str) -> None:
    click.echo(f"bnlint: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


class DefaultToCheck(click.Group):
    """``bnlint src/`` means ``bnlint check src/``: checking is the main job."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (
            args[0] not in self.commands and args[0] not in {"--help", "-h", "--version"}
        ):
            args = ["check", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        # Ctrl-C: the shell's status for SIGINT, not click's "Aborted!" and 1,
        # which would read as "problems found".
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("bnlint: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def run() -> None:
    """The ``bnlint`` command: ``main``, then an exit without one more walk over
    the heap. Python's shutdown runs a full collection, which skips frozen
    objects; a process about to exit has nothing for it to free."""
    try:
        main()
    finally:
        gc.freeze()


@click.group(cls=DefaultToCheck, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnlint")
def main() -> None:
    """bnlint: find the PyTorch mistakes that make a model behave differently in
    training and evaluation. `bnlint PATHS` is short for `bnlint check PATHS`."""


def _codes(values: tuple[str, ...]) -> list[str]:
    return [code.strip() for value in values for code in value.split(",") if code.strip()]


@dataclass
class CheckOptions:
    output_format: str
    exit_zero: bool
    statistics: bool
    quiet: bool
    show_source: bool
    fix: bool
    unsafe_fixes: bool
    diff: bool
    jobs: int
    no_cache: bool
    cache_dir: Path | None


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--select", multiple=True, help="Codes or prefixes to enable (comma-separated).")
@click.option("--ignore", multiple=True, help="Codes or prefixes to disable.")
@click.option("--extend-select", multiple=True, help="Codes to enable on top of the selection.")
@click.option("--exclude", multiple=True, help="Patterns to exclude, replacing the defaults.")
@click.option("--extend-exclude", multiple=True, help="Patterns to exclude on top of the defaults.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read settings from this TOML file.",
)
@click.option("--isolated", is_flag=True, help="Ignore all configuration files.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(list(formatters())),
    default="text",
    show_default=True,
)
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when problems are found.")
@click.option("--statistics", is_flag=True, help="Count problems per code.")
@click.option("-q", "--quiet", is_flag=True, help="Print diagnostics only, no summary.")
@click.option("--show-source", is_flag=True, help="Show the offending line with a caret.")
@click.option("--fix", is_flag=True, help="Apply safe fixes.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply (or count) unsafe fixes.")
@click.option("--diff", is_flag=True, help="Print the fixes as a diff; write nothing.")
@click.option("--stdin-filename", help="The path to report for code read from stdin (`-`).")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    help="Worker processes; 0 (the default): one per core; 1: none, lint in this process.",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache.")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=f"Where to cache results (default: {CACHE_DIR_NAME} in the project root).",
)
def check(
    paths: tuple[Path, ...],
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    extend_select: tuple[str, ...],
    exclude: tuple[str, ...],
    extend_exclude: tuple[str, ...],
    config_file: Path | None,
    isolated: bool,
    stdin_filename: str | None,
    **flags: object,
) -> None:
    """Lint PATHS (files or directories; default: the current directory)."""
    options = CheckOptions(**flags)  # type: ignore[arg-type]
    use_stdin = paths == (Path("-"),)
    anchor = (
        Path(stdin_filename) if use_stdin and stdin_filename else (paths[0] if paths else Path("."))
    )
    overrides = {
        "select": _codes(select),
        "ignore": _codes(ignore),
        "extend-select": _codes(extend_select),
        "exclude": list(exclude),
        "extend-exclude": list(extend_exclude),
    }
    try:
        config = _load(config_file, isolated, anchor)
        config = apply_settings(config, {k: v for k, v in overrides.items() if v}, "command line")
    except ConfigError as error:
        fail(str(error))
    if use_stdin:
        sys.exit(_check_stdin(stdin_filename or "-", config, options))
    for path in paths:
        if not path.exists() and not path.is_symlink():
            fail(f"path does not exist: {path}")
    files = discover(paths or (Path("."),), config)
    sys.exit(_check_files(files, config, options))


def _load(config_file: Path | None, isolated: bool, anchor: Path) -> Config:
    if isolated:
        return Config()
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file does not exist: {config_file}")
        return load_config(config_file)
    return load_config(find_pyproject(anchor if anchor.exists() else Path.cwd()))


def _check_files(files: list[Path], config: Config, options: CheckOptions) -> int:
    cache = None
    if not options.no_cache:
        cache = open_cache(options.cache_dir or default_cache_dir(config), config)
    fixing = options.fix or options.diff
    results = lint_files(files, config, options.jobs, cache, fixing)
    crashed = [r for r in results if r.internal_error]
    for result in crashed:
        click.echo(f"bnlint: internal error while linting {result.path} (please report):", err=True)
        click.echo(result.internal_error, err=True)
    fixed, changed = 0, False
    if options.fix or options.diff:
        for done, result in enumerate(results):
            original = result.source
            try:
                count, did_change = _fix_file(result, config, options)
            except KeyboardInterrupt:
                _interrupted_while_fixing(result.path, original, len(results) - done - 1)
            fixed, changed = fixed + count, changed or did_change
    diagnostics = sorted((d for r in results for d in r.diagnostics), key=lambda d: d.sort_key)
    # A notebook's lines count from the top of a cell: no file line to show.
    sources = {
        r.path: r.source.text for r in results if r.source is not None and not is_notebook(r.path)
    }
    report = Report(
        diagnostics, sources, fixed, options.show_source, _use_color(options), options.unsafe_fixes
    )
    _emit(report, options, fix_mode=options.fix)
    if crashed:
        return EXIT_ERROR
    return _exit_code(report, options, changed)


def _interrupted_while_fixing(path: str, original: SourceFile | None, files_after: int) -> None:
    """Ctrl-C while fixing: the write is atomic, so the file in hand is either
    as it was or wholly fixed; the files after it are untouched."""
    state = "was fixed" if _was_written(path, original) else "was not fixed (it is unchanged)"
    plural = "s" if files_after != 1 else ""
    click.echo(
        f"bnlint: interrupted: {path} {state}; {files_after} later file{plural} not fixed",
        err=True,
    )
    sys.exit(EXIT_INTERRUPTED)


def _was_written(path: str, original: SourceFile | None) -> bool:
    if original is None:
        return False
    try:
        return Path(path).read_bytes() != original.encode(original.text)
    except (OSError, UnicodeError):
        return False


def _fix_file(result: FileResult, config: Config, options: CheckOptions) -> tuple[int, bool]:
    """Fix one file (or diff it); update ``result`` with what remains."""
    if result.source is None or not any(d.fix for d in result.diagnostics):
        return 0, False
    package = package_of(Path(result.path))
    outcome = _fix(
        result.source.text, result.path, config, package, options.unsafe_fixes, result.project
    )
    for message in outcome.rejected:
        click.echo(f"bnlint: {message}", err=True)
    if outcome.text == result.source.text:
        return 0, False
    if options.diff:
        _print_diff(result.path, result.source.text, outcome.text)
        return outcome.applied, True
    try:
        write_fixed(Path(result.path), result.source, outcome.text)
    except OSError as error:
        reason = error.strerror or str(error)
        click.echo(
            f"bnlint: {result.path}: not fixed, the file could not be written: {reason}", err=True
        )
        return 0, False
    result.diagnostics = outcome.remaining
    result.source = type(result.source)(outcome.text, result.source.encoding)
    return outcome.applied, True


def _lint(text: str, path: str, config: Config, package: str | None) -> list[Diagnostic]:
    if is_notebook(path):
        return lint_notebook(text, path, config, package)
    return lint_source(text, path, config, package)


def _fix(
    text: str,
    path: str,
    config: Config,
    package: str | None,
    unsafe: bool,
    project: ProjectIndex | None = None,
) -> FixOutcome:
    """``project``: the index the file was linted with, so that fixes of findings
    about other files' functions are found again when re-linting."""
    if is_notebook(path):
        return fix_notebook(text, path, config, package, unsafe)
    return fix_text(
        text, lambda fixed: lint_source(fixed, path, config, package, project=project), unsafe
    )


def _print_diff(path: str, before: str, after: str) -> None:
    diff = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    click.echo("".join(diff), nl=False)


def _check_stdin(path: str, config: Config, options: CheckOptions) -> int:
    try:
        source = decode_source(sys.stdin.buffer.read())
    except UnreadableSource as error:
        diagnostics = [input_diagnostic(path, "BNL902", str(error), error.line, error.column)]
        _emit(Report(diagnostics), options, fix_mode=False)
        return _exit_code(Report(diagnostics), options, False)
    package = package_of(Path(path)) if path != "-" else None
    diagnostics = _lint(source.text, path, config, package)
    fixed, changed = 0, False
    if options.fix or options.diff:
        outcome = _fix(source.text, path, config, package, options.unsafe_fixes)
        changed = outcome.text != source.text
        if options.diff:
            _print_diff(path, source.text, outcome.text)
            fixed = outcome.applied
        else:
            # Editors pipe code through ``--fix -``: the fixed code goes to stdout.
            sys.stdout.write(outcome.text)
            sys.stdout.flush()
            fixed, diagnostics = outcome.applied, outcome.remaining
    report = Report(
        diagnostics, {path: source.text}, fixed, options.show_source, False, options.unsafe_fixes
    )
    _emit(report, options, fix_mode=options.fix, to_stderr=options.fix and not options.diff)
    return _exit_code(report, options, changed)


def _emit(report: Report, options: CheckOptions, fix_mode: bool, to_stderr: bool = False) -> None:
    if options.diff:
        # The diff is the output; what it would fix is a note on stderr.
        if not options.quiet:
            click.echo(
                f"Would fix {report.fixed} problem{'s' if report.fixed != 1 else ''}.", err=True
            )
        return
    output = formatters()[options.output_format](report)
    click.echo(output, nl=False, err=to_stderr)
    if options.output_format != "text":
        return
    if options.statistics:
        counts = Counter(d.code for d in report.diagnostics)
        for code, count in sorted(counts.items()):
            name = DOCUMENTED_BY_CODE[code].name if code in DOCUMENTED_BY_CODE else code
            click.echo(f"{count:<6} {code:<7} {name}", err=to_stderr)
    if not options.quiet:
        click.echo(summary(report, fix_mode), err=to_stderr)


def _exit_code(report: Report, options: CheckOptions, changed: bool) -> int:
    if options.exit_zero:
        return EXIT_CLEAN
    if options.diff:
        return EXIT_PROBLEMS if changed else EXIT_CLEAN
    return EXIT_PROBLEMS if report.diagnostics else EXIT_CLEAN


def _use_color(options: CheckOptions) -> bool:
    return (
        options.output_format == "text" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )


@main.command()
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=f"The cache to delete (default: {CACHE_DIR_NAME} in the project root).",
)
def clean(cache_dir: Path | None) -> None:
    """Delete the result cache."""
    if cache_dir is None:
        try:
            cache_dir = default_cache_dir(_load(None, False, Path.cwd()))
        except ConfigError as error:
            fail(str(error))
            return
    if not cache_dir.exists():
        click.echo(f"No cache at {cache_dir}.")
    elif clear_cache(cache_dir):
        click.echo(f"Removed {cache_dir}.")
    else:
        fail(f"{cache_dir} is not a bnlint cache (it has no bnlint CACHEDIR.TAG); not removed")


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--limit-batches", type=click.IntRange(min=1), help="Cut every DataLoader loop after N batches."
)
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Stop the script after SECONDS."
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@click.option("--select", multiple=True, help="Codes or prefixes to enable (comma-separated).")
@click.option("--ignore", multiple=True, help="Codes or prefixes to disable.")
def confirm(
    script: Path,
    args: tuple[str, ...],
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    **options: object,
) -> None:
    """Lint SCRIPT's folder, run `python SCRIPT ARGS` under the runtime monitor (needs
    torch), and report which static findings the run CONFIRMED or CONTRADICTED, which it
    did not reach, and what it found that the linter did not. Exit 1 when anything was
    confirmed or found at run time, or the script failed."""
    try:
        import bnlint.runtime  # noqa: F401  (torch: only here, never for `check`)
    except ImportError as error:
        fail(str(error))
    from bnlint.confirm import confirm as run_confirm
    from bnlint.confirm import timeout_supported

    if options["timeout"] is not None and not timeout_supported():
        fail("--timeout needs a POSIX system (SIGALRM) and the main thread")
    try:
        settings = {"select": _codes(select), "ignore": _codes(ignore)}
        config = apply_settings(
            _load(None, False, script), {k: v for k, v in settings.items() if v}, "command line"
        )
    except ConfigError as error:
        fail(str(error))
    report, status = run_confirm(script, list(args), config, **options)  # type: ignore[arg-type]
    click.echo(report, nl=False)
    sys.exit(status)


@main.command()
def server() -> None:
    """Run the language server (LSP over stdio) for editors; needs bnlint[server]."""
    try:
        from bnlint.server import build_server
    except ImportError as error:
        if (error.name or "").partition(".")[0] not in {"pygls", "lsprotocol"}:
            raise
        fail("the language server needs pygls: pip install 'bnlint[server]'")
        return
    build_server().start_io()


# -- rule documentation -----------------------------------------------------------


@main.command()
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (the README's).")
def rules(markdown: bool) -> None:
    """List every rule: code, name, whether it has a fix, and what it finds."""
    if markdown:
        click.echo(rules_markdown(), nl=False)
        return
    click.echo(f"{'code':<7} {'name':<42} {'fix':<4} summary")
    for rule in DOCUMENTED:
        fix = "yes" if rule.fixable else "no"
        click.echo(f"{rule.code:<7} {rule.name:<42} {fix:<4} {rule.summary}")


def rules_markdown() -> str:
    rows = ["| code | name | fix | finds |", "|---|---|---|---|"]
    for rule in DOCUMENTED:
        summary = rule.summary.replace("|", "\\|")
        rows.append(
            f"| {rule.code} | {rule.name} | {'yes' if rule.fixable else 'no'} | {summary} |"
        )
    return "\n".join(rows) + "\n"


@main.command()
@click.argument("code")
def explain(code: str) -> None:
    """Print the documentation of rule CODE, with its examples."""
    rule = DOCUMENTED_BY_CODE.get(code.upper())
    if rule is None:
        fail(f"unknown rule code '{code}' (see `bnlint rules`)")
        return
    click.echo(f"# {rule.code} {rule.name}\n\n{rule.documentation()}\n")
    click.echo(examples(rule.code), nl=False)


def examples(code: str) -> str:
    """The rule's first bad fixture and its fixed version (or first good fixture)."""
    folder = FIXTURES / code
    if not (SOURCE_TREE / "pyproject.toml").is_file():
        return ""
    bad = sorted(folder.glob("bad_*.py"))
    bad = [path for path in bad if not path.name.endswith(".fixed.py")]
    if not bad:
        return ""
    example = bad[0]
    fixed = example.with_name(example.stem + ".fixed.py")
    good = fixed if fixed.exists() else next(iter(sorted(folder.glob("good_*.py"))), None)
    text = f"## Example\n\n```python\n{example.read_text()}```\n"
    if good is not None:
        text += f"\n## Use instead\n\n```python\n{good.read_text()}```\n"
    return text
