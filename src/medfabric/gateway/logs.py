"""Structured logs: one JSON object per line (time, level, event, hospital and event fields)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class JsonFormatter(logging.Formatter):
    """``{"ts": …, "level": …, "event": …, "hospital": …, …fields}``."""

    def __init__(self, hospital_id: str) -> None:
        super().__init__()
        self.hospital_id = hospital_id

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "hospital": self.hospital_id,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(doc, ensure_ascii=False, default=str)


def setup_logging(hospital_id: str, log_file: Path | None, *, stderr: bool = True) -> None:
    """Send ``medfabric.gateway`` logs as JSON lines to stderr and/or a file."""
    logger = logging.getLogger("medfabric.gateway")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = JsonFormatter(hospital_id)
    handlers: list[logging.Handler] = []
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
