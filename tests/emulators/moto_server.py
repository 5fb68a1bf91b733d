"""moto's server (the tests' AWS), with one cost of its SQS removed and one bug of its EventBridge fixed.

moto 5.2 builds the whole attribute map of a queue to read one entry of it: each `SendMessage` reads
`ContentBasedDeduplication` through `Queue.attributes`, and that map holds three counts of the queue's
messages, each a scan of every message with two clock reads per message. Sending n messages into a
queue therefore costs O(n^2): in the 1,000-account scheduler test (about 6,000 messages over three ticks)
this was half of moto's CPU, and that test was the suite's longest (BENCHMARKS.md, "Test suite").

Here `Queue.attributes` is a read-only map that computes moto's own map on first use, except for
`ContentBasedDeduplication`, which it reads from the queue directly, the way moto's map would hold it (a
FIFO-only attribute; a boolean written as "true"/"false").

EventBridge: moto reads a bus named in a call (`EventBusName` of `PutRule`, `PutTargets`, `PutEvents`,
`ListRules`, ...) as whatever follows the last "/" of it, taking every value for an ARN. A partner
event bus is named after its partner event source, `aws.partner/stripe.com/ed_...`, slashes included,
and AWS takes that name (or the bus's ARN, `arn:...:event-bus/<name>`): moto answered "Event bus
ed_... does not exist". Here a value is the name after `:event-bus/` when it is an ARN, else the name
itself; every other bus resolves as before. moto's CloudFormation passes a rule's `EventBusName: !Ref
<bus>` on as its bus object, which moto's own code could not read either: the bus's name is taken.

Usage: the same as `moto_server` (e.g. `python moto_server.py -H 127.0.0.1 -p 5000`).
"""

from collections.abc import Mapping

from moto.events import models as events
from moto.server import main
from moto.sqs import models

_moto_attributes = models.Queue.attributes.fget


class QueueAttributes(Mapping):
    """moto's attribute map of one queue, computed when first needed."""

    def __init__(self, queue):
        self._queue = queue
        self._all = None

    def _load(self):
        if self._all is None:
            self._all = _moto_attributes(self._queue)
        return self._all

    def get(self, key, default=None):
        if key == "ContentBasedDeduplication" and self._all is None:
            if not self._queue.fifo_queue:
                return default
            value = self._queue.content_based_deduplication
            return str(value).lower() if isinstance(value, bool) else value
        return self._load().get(key, default)

    def __getitem__(self, key):
        return self._load()[key]

    def __iter__(self):
        return iter(self._load())

    def __len__(self):
        return len(self._load())


models.Queue.attributes = property(QueueAttributes)


def _event_bus_name(self, name_or_arn):
    """The bus a call names: its name, or the name in its ARN (moto's own cut at the last "/")."""
    if name_or_arn is None:
        return "default"
    if isinstance(name_or_arn, events.EventBus):
        return name_or_arn.name
    return name_or_arn.split(":event-bus/", 1)[-1]


events.EventsBackend._normalize_event_bus_arn = _event_bus_name

if __name__ == "__main__":
    main()
