"""Why `finsent run` stops before Ctrl-C, as one line for the operator.

`RunError` is a run that cannot start or go on (bad input, a service that died, a lost
stream); `DemoFailed` is a run that worked but whose demo did not end as it should (its
alert not raised or not delivered). The CLI turns them into exit codes 2 and 1.
"""

from __future__ import annotations


class RunError(Exception):
    """The pipeline cannot start or go on; the message says why in one line."""


class DemoFailed(RunError):
    """With --exit-when-done: the demo ran, but its alert was not raised or not delivered."""
