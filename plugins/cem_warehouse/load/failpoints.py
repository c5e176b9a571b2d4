"""Named points where a test can kill the loading process with SIGKILL.

Crash safety is a promise ("a worker killed at any point leaves raw and cursors as they
were"), so tests must be able to kill a load at exact points, not at lucky moments. With
``CEM_FAILPOINT`` unset (always, outside those tests) ``reach`` does nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "CEM_FAILPOINT"
POINTS = ("during_copy", "before_publish", "during_publish", "before_publish_commit")


def reach(point: str) -> None:
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
