from bnlint.cli import run

run()
