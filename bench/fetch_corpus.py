"""Fetch the benchmark corpus: pinned releases of real PyTorch projects.

Each release is downloaded with `pip download --no-deps --only-binary :all:`
(a pure wheel holds the full Python source, and no build code ever runs), and
only its .py and .ipynb files are unpacked into
bench/.cache/corpus/<name>-<version>/. A marker file per corpus records its
size, so a re-run with a complete cache downloads nothing.

Usage: python bench/fetch_corpus.py [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

# (PyPI name, pinned version, why it is in the corpus). All ship pure wheels,
# so no sdist is needed. torchvision is left out: PyPI has no current sdist of
# it, only platform wheels.
CORPORA: list[tuple[str, str, str]] = [
    ("timm", "1.0.31", "model zoo, freeze_batch_norm_2d, EMA"),
    ("transformers", "5.23.0", "the big one; Trainer.evaluate"),
    ("lightning", "2.6.6", "Lightning and Fabric loops"),
    ("ultralytics", "8.4.190", "YOLO trainer and validators"),
    ("yolov5", "7.0.14", "train.py / val.py training scripts"),
    ("mmdet", "3.3.0", "norm_eval train() overrides, tools/train.py"),
    ("mmpretrain", "1.2.0", "mm-style models and configs"),
    ("diffusers", "0.42.1", "diffusion models and training utils"),
    ("pytorch-ignite", "0.5.5", "Ignite engines and evaluators"),
    ("fastai", "2.8.12", "Learner train/validate loop"),
    ("skorch", "1.4.0", "sklearn-style fit/predict loop"),
    ("torchdistill", "1.1.5", "distillation training loops"),
    ("monai", "1.6.1", "medical imaging networks and engines"),
    ("speechbrain", "1.1.2", "Brain.fit/evaluate recipes"),
    ("avalanche-lib", "0.6.0", "continual-learning strategies and their tests"),
    ("flair", "0.15.1", "NLP ModelTrainer"),
    ("pytorch-metric-learning", "2.9.0", "metric-learning trainers and testers"),
    ("lightly", "1.6.0", "self-supervised models, split batch norm"),
    ("torchgeo", "0.8.1", "Lightning datamodules with per-stage transforms"),
    ("pytorch-forecasting", "1.8.0", "time-series models, reference attention"),
    ("stable-baselines3", "2.9.2", "RL policies that switch training mode"),
    ("sentence-transformers", "6.2.0", "fit loops and evaluators"),
]

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
CORPUS_ROOT = CACHE / "corpus"
SUFFIXES = (".py", ".ipynb")


@dataclass
class Stats:
    files: int
    lines: int
    bytes: int


def corpus_dir(name: str, version: str) -> Path:
    return CORPUS_ROOT / f"{name}-{version}"


def marker(name: str, version: str) -> Path:
    # Beside the corpus, not in it, so the corpus holds only source files.
    return CORPUS_ROOT / f"{name}-{version}.complete.json"


def read_marker(name: str, version: str) -> Stats | None:
    path = marker(name, version)
    if not path.is_file() or not corpus_dir(name, version).is_dir():
        return None
    return Stats(**json.loads(path.read_text()))


def download_wheel(name: str, version: str, dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--quiet",
        "--dest",
        str(dest),
        f"{name}=={version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise RuntimeError(f"pip download {name}=={version} failed:\n{result.stderr}")
    return wheels[0]


def safe_member(name: str) -> PurePosixPath | None:
    """The member's relative path, or None if it is not source or escapes the root."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or path.suffix not in SUFFIXES:
        return None
    return path


def unpack_sources(wheel: Path, target: Path) -> Stats:
    stats = Stats(0, 0, 0)
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            rel = safe_member(info.filename)
            if info.is_dir() or rel is None:
                continue
            data = archive.read(info)
            out = target.joinpath(*rel.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            stats.files += 1
            stats.lines += len(data.splitlines())
            stats.bytes += len(data)
    return stats


def fetch(name: str, version: str) -> Stats:
    done = read_marker(name, version)
    if done is not None:
        return done
    CORPUS_ROOT.mkdir(parents=True, exist_ok=True)
    final = corpus_dir(name, version)
    with tempfile.TemporaryDirectory(dir=CORPUS_ROOT, prefix=".fetch-") as tmp:
        staging = Path(tmp) / "src"
        stats = unpack_sources(download_wheel(name, version, Path(tmp)), staging)
        # Unpack aside and rename, so an interrupted fetch never looks complete.
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    marker(name, version).write_text(json.dumps(asdict(stats)))
    return stats


def print_table(rows: list[tuple[str, str, Stats]]) -> None:
    print(f"{'corpus':<16} {'version':<10} {'files':>7} {'lines':>10} {'MB':>7}")
    for name, version, s in rows:
        print(f"{name:<16} {version:<10} {s.files:>7} {s.lines:>10} {s.bytes / 1e6:>7.1f}")
    files = sum(s.files for _, _, s in rows)
    lines = sum(s.lines for _, _, s in rows)
    size = sum(s.bytes for _, _, s in rows) / 1e6
    print(f"{'total':<16} {'':<10} {files:>7} {lines:>10} {size:>7.1f}")


def select(names: list[str]) -> list[tuple[str, str, str]]:
    known = {name for name, _, _ in CORPORA}
    unknown = sorted(set(names) - known)
    if unknown:
        sys.exit(f"unknown corpus: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return [c for c in CORPORA if not names or c[0] in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="corpora to fetch (default: all)")
    args = parser.parse_args()
    rows = []
    for name, version, _ in select(args.names):
        print(f"fetching {name}=={version} ...", file=sys.stderr, flush=True)
        rows.append((name, version, fetch(name, version)))
    print_table(rows)


if __name__ == "__main__":
    main()
