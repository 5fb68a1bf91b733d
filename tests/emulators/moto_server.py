"""moto's server (the tests' AWS), with one cost of its SQS removed; it answers exactly as moto does.

moto 5.2 builds the whole attribute map of a queue to read one entry of it: each `SendMessage` reads
`ContentBasedDeduplication` through `Queue.attributes`, and that map holds three counts of the queue's
messages, each a scan of every message with two clock reads per message. Sending n messages into a
queue therefore costs O(n^2): in the 1,000-account scheduler test (about 6,000 messages over three ticks)
this was half of moto's CPU, and that test was the suite's longest (BENCHMARKS.md, "Test suite").

Here `Queue.attributes` is a read-only map that computes moto's own map on first use, except for
`ContentBasedDeduplication`, which it reads from the queue directly, the way moto's map would hold it (a
FIFO-only attribute; a boolean written as "true"/"false").

Usage: the same as `moto_server` (e.g. `python moto_server.py -H 127.0.0.1 -p 5000`).
"""

from collections.abc import Mapping

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

if __name__ == "__main__":
    main()
