"""Services that do not run the model do not import torch (nor transformers).

Importing torch costs seconds and hundreds of MB; the alerter, the dispatcher, the ingest
commands and the dashboard never call the model, and a slip (a module-level
`from bert_core import Predictor` in a helper they share with the scorer) would make each of
them pay for it without any test noticing. So each import below runs in a fresh interpreter,
where nothing else has loaded torch already, with an import hook that records which finsent
module first asked for it. The scorer's batch code is on the list too: it handles
`Prediction`s but gets its predictor handed in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers")

# Run in the fresh interpreter: a meta-path finder that only watches (it finds nothing, so
# the normal import goes on) and notes the chain of finsent lines that asked for a heavy
# package (innermost first), then the import statement under test, then what ended up in
# sys.modules.
PROBE = """
import json, sys, traceback

ROOT = {root!r}
HEAVY = {heavy!r}
culprits = {{}}


class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in culprits:
            ours = [
                f"{{f.filename.removeprefix(ROOT + '/')}}:{{f.lineno}}"
                for f in traceback.extract_stack()
                if f.filename.startswith(ROOT) and "/.venv/" not in f.filename
            ]
            culprits[top] = " <- ".join(reversed(ours)) or "?"
        return None


sys.meta_path.insert(0, Watch())
{statement}
loaded = sorted(top for top in HEAVY if top in sys.modules)
print(json.dumps({{"loaded": loaded, "culprits": culprits}}))
"""


def imports_heavy(statement: str) -> dict[str, object]:
    """What `statement` loads of torch and transformers in a fresh interpreter, and which
    finsent lines asked for each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    code = PROBE.format(root=str(ROOT), heavy=HEAVY, statement=statement)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


TORCH_FREE = [
    # what the issue names: the packages of the services that never run the model
    "import services.alerting, services.delivery, services.scorer.batch, services.ingest, dashboards",
    "import dashboards.data",
    # the modules those services actually run, and what they share
    "import services.alerting.service, services.alerting.metrics",
    "import services.delivery.dispatcher, services.delivery.channels",
    "import services.ingest.producer, services.ingest.replay, services.ingest.http_source",
    "import services.scorer, services.scorer.sink, services.scorer.summary, services.scorer.health",
    "import services.probes, services.retry, services.storage, services.settings",
    # the CLI's `labels` and `models list` commands (services.learning's docstring promises it)
    "import services.learning",
]


@pytest.mark.parametrize("statement", TORCH_FREE)
def test_does_not_import_torch(statement: str) -> None:
    result = imports_heavy(statement)
    assert result["loaded"] == [], f"{statement} loads {result['loaded']}, asked for at {result['culprits']}"


def test_the_probe_sees_torch_when_it_is_imported() -> None:
    """The check above can fail: the model's own entry point is seen loading torch, and the
    hook names the finsent line that asked for it."""
    result = imports_heavy("from bert_core import Predictor")
    assert "torch" in result["loaded"]  # type: ignore[operator]
    culprits = result["culprits"]
    assert isinstance(culprits, dict) and culprits["torch"].startswith("bert_core/")


# A typo in a model command's arguments is one line within a second, not after the seconds it
# takes to load torch and transformers: the commands check their files and options first.
TWO_FILES = ["teacher-targets", "--targets", "a.npz", "--targets", "b.npz"]  # an ensemble of files
BAD_MODEL_COMMANDS = [
    (["train", "--sentiment-data", "no-such.csv", "--out", "m"], "no-such.csv: no such file"),
    (["train", "--encoder", "no-such-encoder", "--out", "m"], "encoder 'no-such-encoder' is neither"),
    (["train", "--teacher", "no-such-dir", "--out", "m"], "no-such-dir: no such model directory"),
    (["train", "--init-from", "no-such-dir", "--out", "m"], "no-such-dir: no such model directory"),
    (["train", "--soft-targets", "no-such.npz", "--out", "m"], "no-such.npz: no such soft-targets file"),
    (["evaluate", "--model", "no-such-dir"], "no-such-dir: no such model directory"),
    (["predict", "--model", "no-such-dir", "a headline"], "no-such-dir: no such model directory"),
    ([*TWO_FILES, "--head-members", "x", "--out", "e.npz"], "--head-members 'x': give HEAD=N[,N]"),
    (
        [*TWO_FILES, "--head-members", "topic=3", "--out", "e.npz"],
        "topic: members are numbered 1 to 2, not [3]",
    ),
    (
        ["teacher-targets", "--targets", "no-such.npz", "--targets", "b.npz", "--out", "e.npz"],
        "no-such.npz: no such soft-targets file",
    ),
    (
        ["teacher-targets", "--teacher", "no-such-dir", "--out", "e.npz"],
        "no-such-dir: no such model directory",
    ),
    (["pretrain-mlm", "--text-data", "no-such.txt", "--out", "m"], "no-such.txt: no such file"),
]


@pytest.mark.parametrize(
    ("argv", "message"), BAD_MODEL_COMMANDS, ids=lambda v: " ".join(v[:3]) if isinstance(v, list) else ""
)
def test_a_model_command_with_a_bad_argument_fails_before_loading_torch(
    argv: list[str], message: str
) -> None:
    # In the fresh interpreter: the command, its one error line (checked there), then the probe.
    statement = (
        "import contextlib, io, sys\n"
        "from services.cli import main\n"
        f"sys.argv = ['finsent', *{argv!r}]\n"
        "err = io.StringIO()\n"
        "try:\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        main()\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 2, (stop.code, err.getvalue())\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
        "lines = err.getvalue().strip().splitlines()\n"
        f"assert lines[-1].startswith('finsent: error: ') and {message!r} in lines[-1], lines"
    )
    result = imports_heavy(statement)
    command = " ".join(argv)
    assert result["loaded"] == [], f"finsent {command} loads {result['loaded']} at {result['culprits']}"
