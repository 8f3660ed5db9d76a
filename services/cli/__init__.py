"""The finsent command line.

Where a command lives: `finsent X` (a command, or a group of subcommands `finsent X …`) is
defined in `services/cli/X.py`, dashes written as underscores: `alerts.py` for `finsent
alerts …`, `alerter.py` for `finsent alerter`, `run.py` for `finsent run`. Three modules
also hold sister commands that share their plumbing, each listed in its docstring:
`ingest.py` (init, ingest, serve-http, poll-feed), `train.py` (train, evaluate, predict,
pretrain-mlm) and `retrain.py` (retrain, scheduler). Every other module is a helper named
for what it holds: `app.py` assembles the command, `common.py`, `choices.py` and `errors.py`
serve every command, `doctor_checks.py` and `learning_common.py` serve one or two.

A command module is meant to be a thin shell: it parses options, calls the package that does the
work, prints, and turns errors into one line and an exit code (errors.py).
"""

from services.cli.app import app, main

__all__ = ["app", "main"]
