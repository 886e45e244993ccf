"""Caps on the new distinct texts the labeler accepts from the network: per sender and in total.

Every distinct text the labeler accepts is stored forever (its ``seen`` table) and, unless a
label is cached, costs one LLM call. Texts come from the network, so a buggy actor (an env that
prints a counter into every message) or a hostile client could grow the store and the LLM bill
without limit. :class:`TextAdmission` caps both: ``max_total`` distinct texts over the run (the
store's restored texts count), and ``max_per_sender`` new texts per sender, so one flooding
sender spends its own quota, not the others'. Refused texts are counted by reason and sent to
the learner's TensorBoard as ``labeler/texts_refused_total`` and ``labeler/texts_refused_sender``.

A sender is the ``actor_id`` a texts message declares. A client that forges ids gets a quota per
id, which the total cap still bounds; with CURVE on (``wire.curve_keys``) only authorised
clients can send at all. Per-sender counts start afresh when the labeler restarts; the total
does not (it is read back from the store).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["TextAdmission"]


class TextAdmission:
    """Decides which new distinct texts enter the store and the labelling queue.

    Args:
        max_total: Most distinct texts ever accepted (>= 1), ``already`` included.
        max_per_sender: Most new texts one sender may bring (>= 1).
        already: Distinct texts accepted before (the store's, on a restart).

    Raises:
        ValueError: a cap < 1 or ``already`` < 0.
    """

    def __init__(self, max_total: int, max_per_sender: int, already: int = 0) -> None:
        if max_total < 1 or max_per_sender < 1 or already < 0:
            raise ValueError(f"text admission: caps must be >= 1 and already >= 0, got "
                             f"max_total={max_total}, max_per_sender={max_per_sender}, "
                             f"already={already}")
        self.max_total = max_total
        self.max_per_sender = max_per_sender
        self.total = already
        self.per_sender: Counter[int] = Counter()  # one entry per sender that got a text in
        self.refused_sender = 0
        self.refused_total = 0

    def admit(self, sender: int, texts: Sequence[str]) -> list[str]:
        """The prefix of ``texts`` (new, distinct) that fits both caps; the rest is counted.

        Args:
            sender: The sending actor's id.
            texts: New distinct texts, in arrival order.

        Returns:
            The accepted texts, in order.
        """
        room_sender = self.max_per_sender - self.per_sender[sender]
        room_total = self.max_total - self.total
        n = max(0, min(len(texts), room_sender, room_total))
        if len(texts) > n:
            # the total cap binds first when it leaves less room: count each refusal once
            by_total = max(0, min(len(texts), room_sender) - max(room_total, 0))
            self.refused_total += by_total
            self.refused_sender += len(texts) - n - by_total
        if n:  # (reading a Counter adds no entry: only senders that got a text in count)
            self.per_sender[sender] += n
            self.total += n
        return list(texts[:n])

    def stats(self) -> dict[str, float]:
        """Counters for TensorBoard (``labeler/...``)."""
        return {"texts_accepted_total": float(self.total),
                "texts_refused_total": float(self.refused_total),
                "texts_refused_sender": float(self.refused_sender),
                "senders": float(len(self.per_sender))}
