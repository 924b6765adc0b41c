"""Draining a durable queue from a thread while extraction fills it (the outbox for the sender,
the notary queue for notarization), so that this process and the other side work at once.

A subclass says what one round does (:meth:`BackgroundRounds._round`); the base runs rounds
whenever it is woken, hands any exception to :meth:`BackgroundRounds._finish`, and closes the
thread's own state connection there. Each item is visible to a round only once the transaction
that queued it has committed, so a round never sees half a batch.
"""

from __future__ import annotations

import threading

from medfabric.gateway.state import GatewayState


class BackgroundRounds:
    """Runs :meth:`_round` in a thread each time it is woken, until the last pass.

    Args:
        state: The thread's own view of the gateway state (``GatewayState.for_thread``),
            closed by :meth:`_finish`.
        name: The thread's name.
    """

    def __init__(self, state: GatewayState, name: str) -> None:
        self._state = state
        self._wake = threading.Event()
        self._done = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """An item was queued."""
        self._wake.set()

    def _round(self) -> bool:
        """One round over what is queued; False stops the thread (a failure, a back-off not
        yet due, or a stop)."""
        raise NotImplementedError

    def _finish(self, *, stop: bool = False) -> None:
        """No more items are coming: drain what is queued (with ``stop``, end after the
        current step instead), join, and close the thread's state.

        Raises:
            BaseException: whatever stopped the thread (re-raised here).
        """
        if stop:
            self._stop.set()
        self._done.set()
        self._wake.set()
        self._thread.join()
        self._state.close()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                last_pass = self._done.is_set()  # every item is committed before this pass
                if not self._round() or last_pass:
                    return
                self._wake.wait()
        except BaseException as e:  # handed to _finish()
            self._error = e
