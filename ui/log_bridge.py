"""Warnings the model code logs (a model streamed from disk, a LoRA layer skipped, a VAE retried in
float32, an embedding a T5 cannot read) shown in the window's Log, not only on a terminal nobody sees.

Those messages come from deep inside loaders that have no run context to report through, and they are
logged from the executor's worker thread. A `logging.Handler` on the ``nodes`` logger turns each record
into a Qt signal; the signal's queued connection carries it to the window's thread, where the Log panel
adds it. The handler is removed when the window shuts down, so a closed window never receives records.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal

#: The loggers whose warnings reach the window: everything the node implementations log.
LOGGER = "nodes"


class LogBridge(QObject):
    """Emits ``record(level, text)`` for every WARNING-or-worse record of the ``nodes`` loggers."""

    record = Signal(str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._handler = _SignalHandler(self)
        logging.getLogger(LOGGER).addHandler(self._handler)

    def detach(self) -> None:
        logging.getLogger(LOGGER).removeHandler(self._handler)


class _SignalHandler(logging.Handler):
    def __init__(self, bridge: LogBridge) -> None:
        super().__init__(logging.WARNING)
        self.bridge = bridge

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record with bad arguments must not break the run that logged it
            self.handleError(record)
            return
        self.bridge.record.emit("error" if record.levelno >= logging.ERROR else "warning", text)
