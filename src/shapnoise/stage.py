"""Common entry-point behaviour of the scripts under ``stages/``."""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

from shapnoise.io import setup_logging

log = logging.getLogger("shapnoise.stage")


class StageError(RuntimeError):
    """A problem with the stage's input that the user must fix; printed without a traceback."""


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's ``main`` with logging and its wall time; turn input errors into exit code 1.

    Errors about inputs (params, files, data) end the stage with their message
    only, because the message names the value and the fix. Anything else is a
    bug and keeps its traceback.
    """
    from shapnoise.params import ParamsError

    setup_logging()
    start = time.perf_counter()
    log.info("stage %s: started", name)
    try:
        main()
    except (StageError, ParamsError, FileNotFoundError, ValueError) as error:
        log.error("stage %s failed: %s", name, error)
        sys.exit(1)
    log.info("stage %s: finished in %.1f s", name, time.perf_counter() - start)
