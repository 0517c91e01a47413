"""Fan-out of daemon events to API clients, hooks and metrics, without ever waiting for any of them.

The daemon calls :meth:`EventPublisher.publish` on the event loop for every event. Each API client
has a :class:`Subscription` with a bounded queue: when a client falls that far behind it is marked
dropped (its connection is then closed by the server) instead of slowing the publisher. Listeners
(hooks, metrics) are plain functions called inline; they must return at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from voiced.control.messages import Event, event_json
from voiced.control.throttle import Throttle
from voiced.log import get_logger

log = get_logger("control")

Listener = Callable[[Event], None]


class SubscriptionDroppedError(Exception):
    """The subscriber fell too far behind and was dropped; close its connection."""


class Subscription:
    """One client's queue of serialised events. Read it with :meth:`get` until it raises."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._queue: deque[str] = deque()
        self._ready = asyncio.Event()
        self.dropped = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, text: str) -> bool:
        """Queue ``text``; False (and the subscription is dropped, its queue freed) when it is full."""
        if self.dropped.is_set():
            return False
        if len(self._queue) >= self.max_events:
            self._queue.clear()
            self.dropped.set()
            self._ready.set()
            return False
        self._queue.append(text)
        self._ready.set()
        return True

    async def get(self) -> str:
        """The next event's JSON text. Raises :class:`SubscriptionDroppedError` once dropped."""
        while True:
            if self.dropped.is_set():
                raise SubscriptionDroppedError
            if self._queue:
                return self._queue.popleft()
            self._ready.clear()
            await self._ready.wait()


class EventPublisher:
    """Where the daemon sends events. Create one per process; call everything on the event loop."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self._throttle = Throttle()
        self.published = 0
        self.dropped_subscribers = 0

    @property
    def subscriber_count(self) -> int:
        """How many API clients are subscribed."""
        return len(self._subscriptions)

    def subscribe(self, max_events: int) -> Subscription:
        """A new subscription holding up to ``max_events``; :meth:`unsubscribe` it when done."""
        subscription = Subscription(max_events)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription`` (idempotent)."""
        self._subscriptions.discard(subscription)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every event from now on; it must not block."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (idempotent)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every listener and subscriber. Never blocks and never raises."""
        self.published += 1
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:
                suppressed = self._throttle.allow("listener")
                if suppressed is not None:
                    error = f"{type(exc).__name__}: {exc}"[:300]
                    log.warning("event listener failed", error=error, suppressed=suppressed)
        if not self._subscriptions:
            return
        text = event_json(event)
        for subscription in list(self._subscriptions):
            if not subscription.offer(text):
                self._subscriptions.discard(subscription)
                self.dropped_subscribers += 1
                suppressed = self._throttle.allow("slow-client")
                if suppressed is not None:
                    log.warning(
                        "control client too slow: dropped",
                        queued_events=subscription.max_events,
                        suppressed=suppressed,
                    )
