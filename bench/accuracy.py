"""Accuracy benchmark: bnlint's findings on the corpus against human reviews.

Runs `bnlint --format json --exit-zero --no-cache` over each corpus, writes
every finding to bench/.cache/findings.json, matches them to the verdicts in
bench/reviews.csv, prints precision per code over the reviewed findings, and
lists the unreviewed ones for a reviewer.

A review matches a finding by (corpus, path, code, stripped source line), so
reviews survive line shifts and corpus version bumps; `line` is informational.
One review therefore covers identical lines with the same code in one file.

Usage: python bench/accuracy.py [--corpus NAME ...] [--reuse] [--write-unreviewed FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from fetch_corpus import BENCH, CACHE, corpus_dir, read_marker, select

FINDINGS = CACHE / "findings.json"
REVIEWS = BENCH / "reviews.csv"
# The source column is what matching uses; it goes last to keep the row easy to edit.
COLUMNS = ["corpus", "path", "line", "code", "verdict", "reason", "source"]
VERDICTS = ("tp", "fp")

Key = tuple[str, str, str, str]


def source_line(path: Path, line: int) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def lint_corpus(name: str, version: str) -> list[dict]:
    """bnlint's findings on one corpus, with paths relative to its root."""
    root = corpus_dir(name, version)
    # Lint a copy outside the repo, so neither the repo's config nor its
    # .gitignore (which ignores bench/.cache/) applies to the corpus.
    with tempfile.TemporaryDirectory(prefix="bnlint-accuracy-") as tmp:
        copy = Path(tmp) / root.name
        shutil.copytree(root, copy)
        cmd = ["bnlint", "--format", "json", "--exit-zero", "--no-cache", root.name]
        result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {result.returncode}):\n{result.stderr}")
    findings = json.loads(result.stdout or "[]")
    for item in findings:
        # Paths may come back relative to cwd (the temp dir) or absolute; either
        # way, make them corpus-relative.
        rel = Path(os.path.normpath(Path(tmp) / item["path"])).relative_to(copy).as_posix()
        item.update(corpus=name, path=rel, source=source_line(root / rel, item["line"]))
    return findings


def key(row: dict) -> Key:
    return (row["corpus"], row["path"], row["code"], row["source"].strip())


def load_reviews() -> dict[Key, dict]:
    reviews: dict[Key, dict] = {}
    with REVIEWS.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            if row["verdict"] not in VERDICTS:
                sys.exit(f"{REVIEWS}:{number}: verdict must be tp or fp, not {row['verdict']!r}")
            reviews[key(row)] = row
    return reviews


def print_precision(findings: list[dict], reviews: dict[Key, dict]) -> None:
    total: Counter[str] = Counter(f["code"] for f in findings)
    verdicts: Counter[tuple[str, str]] = Counter()
    for finding in findings:
        review = reviews.get(key(finding))
        if review:
            verdicts[finding["code"], review["verdict"]] += 1
    print(f"{'code':<8} {'findings':>8} {'reviewed':>8} {'tp':>5} {'fp':>5} {'precision':>9}")
    for code in sorted(total):
        tp, fp = verdicts[code, "tp"], verdicts[code, "fp"]
        precision = f"{tp / (tp + fp):.0%}" if tp + fp else "-"
        print(f"{code:<8} {total[code]:>8} {tp + fp:>8} {tp:>5} {fp:>5} {precision:>9}")
    matched = {key(f) for f in findings}
    stale = [k for k in reviews if k not in matched]
    if stale:
        print(f"\n{len(stale)} reviews match no current finding (fixed rule or changed code)")


def print_unreviewed(unreviewed: list[dict]) -> None:
    print(f"\n{len(unreviewed)} unreviewed findings:")
    for f in unreviewed:
        print(f"{f['corpus']}/{f['path']}:{f['line']}: {f['code']} {f['message']}")
        print(f"    {f['source']}")


def write_template(path: Path, unreviewed: list[dict]) -> None:
    """A reviews.csv-shaped file: fill in verdict and reason, then append it."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        # One row per key: a single verdict covers identical lines in a file.
        rows: dict[Key, dict] = {}
        for f in unreviewed:
            rows.setdefault(key(f), f)
        for f in rows.values():
            writer.writerow({**f, "verdict": "", "reason": ""})


def collect(corpora: list[tuple[str, str, str]]) -> list[dict]:
    findings = []
    for name, version, _ in corpora:
        if read_marker(name, version) is None:
            sys.exit(f"{name} {version} not fetched: run python bench/fetch_corpus.py")
        print(f"linting {name} {version} ...", file=sys.stderr, flush=True)
        findings += lint_corpus(name, version)
    FINDINGS.write_text(json.dumps(findings, indent=1))
    return findings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", default=[], help="corpus (repeatable)")
    parser.add_argument("--reuse", action="store_true", help=f"read {FINDINGS.name}, no bnlint")
    parser.add_argument("--write-unreviewed", type=Path, metavar="FILE", help="CSV template")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    corpora = select(args.corpus)
    names = {name for name, _, _ in corpora}
    findings = json.loads(FINDINGS.read_text()) if args.reuse else collect(corpora)
    findings = [f for f in findings if f["corpus"] in names]
    reviews = {k: row for k, row in load_reviews().items() if row["corpus"] in names}
    print_precision(findings, reviews)
    unreviewed = [f for f in findings if key(f) not in reviews]
    print_unreviewed(unreviewed)
    if args.write_unreviewed:
        write_template(args.write_unreviewed, unreviewed)


if __name__ == "__main__":
    main()
