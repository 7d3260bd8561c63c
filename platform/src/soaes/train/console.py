"""What a training run prints: soaes' own lines on the terminal, everything else in files.

A Ray Train worker's stdout/stderr are streamed to the driver's terminal. Ray Train logs
"Reporting training result N: TrainingReport(...)" for every report of every worker (from a
logger named after its source file, so ``ray.train``'s log level does not reach it), and
DeepSpeed prints its engine set-up; they drowned soaes' progress lines. :func:`route_worker_logs`
(called in every worker once Ray Train has configured its logging) keeps on the console only
soaes' records and warnings/errors of any library; every record (INFO and up) also goes to
``<run_dir>/logs/worker_<rank>.log``. Python warnings (torch's deprecation notices, once per
worker) are captured into logging and kept in that file, off the terminal. Ray Train's
controller logs below WARNING go to Ray's own files only (:data:`RAY_TRAIN_CONSOLE_LEVEL`, set through ``RunConfig.logging_config``).
"""

from __future__ import annotations

import logging
from pathlib import Path

# Console level of Ray Train's ``ray.train`` loggers (controller and workers); its system log
# files under the Ray session folder (logs/train/) keep every level.
RAY_TRAIN_CONSOLE_LEVEL = "WARNING"
# Loggers whose console handlers are filtered: the root logger (where Ray Train's per-report
# line ends up), Ray Train's own, and DeepSpeed's (it has its own stdout handler).
ROUTED_LOGGERS = ("", "ray.train", "DeepSpeed")
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# Logger of Python's warnings once ``logging.captureWarnings`` routes them to logging.
WARNINGS_LOGGER = "py.warnings"


class ConsoleFilter(logging.Filter):
    """Pass soaes' records at any level, other records at WARNING and above, and captured
    Python warnings only from ERROR (``warnings.warn`` goes through at WARNING: never)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] == "soaes":
            return True
        floor = logging.ERROR if record.name == WARNINGS_LOGGER else logging.WARNING
        return record.levelno >= floor


def _is_console(handler: logging.Handler) -> bool:
    """A handler that writes to the terminal (a stream that is not a file)."""
    if isinstance(handler, logging.FileHandler):
        return False
    return isinstance(handler, logging.StreamHandler) or "RayHandler" in type(handler).__name__


def route_worker_logs(
    run_dir: str | Path, rank: int, loggers: tuple[str, ...] = ROUTED_LOGGERS
) -> Path:
    """Filter the console handlers of ``loggers`` with :class:`ConsoleFilter`, add a file
    handler for every record at INFO and above and capture Python warnings into logging;
    returns the log file. Idempotent."""
    path = Path(run_dir) / "logs" / f"worker_{rank}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in loggers:
        logger = logging.getLogger(name)
        for h in logger.handlers:
            if _is_console(h) and not any(isinstance(f, ConsoleFilter) for f in h.filters):
                h.addFilter(ConsoleFilter())
        if not any(getattr(h, "soaes_run_log", None) == str(path) for h in logger.handlers):
            fh = logging.FileHandler(path, encoding="utf-8")
            fh.setLevel(logging.INFO)
            fh.setFormatter(logging.Formatter(WORKER_LOG_FORMAT))
            fh.soaes_run_log = str(path)  # type: ignore[attr-defined]
            logger.addHandler(fh)
    logging.getLogger("soaes").setLevel(logging.INFO)
    logging.captureWarnings(True)
    return path
