"""Where customer ids lie, learned from a sample of them: sizes the `_id` windows of a list walk (pure, no I/O).

SecantusDB plans no `limit` into an index scan: a query costs one fetch per index entry in its key range
(~30 µs), however few documents are asked for. A page is therefore read as successive `_id` ranges
("windows") each holding about as many customers as are still wanted; this module says where the next
window should end. It only sizes windows: a window of the wrong size costs time, never results.

`KeySpace` maps an id to an integer position so that a larger id never gets a smaller position, using the
characters the sample showed at each character position (mixed radix), so ids that use a few characters
(hex, digits) spread evenly over the positions instead of clustering. `Model` is an equi-depth histogram
over those positions: the sample cuts them into gaps each holding about n/gaps ids.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

DEPTH = 32  # character positions modelled; longer ids share the position of their first DEPTH characters
GAP_SAMPLES = 4  # sample ids per histogram gap: fewer gaps, each one's count less noisy


class KeySpace:
    """Monotone map from strings to integers in [0, top): s <= t implies pos(s) <= pos(t).

    Like arithmetic coding: each character position splits its prefix's interval among the characters the sample
    showed there, in proportion to how often each was seen, so that ids drawn like the sample spread evenly."""

    def __init__(self, ids: Iterable[str]):
        ids = list(ids)
        depth = min(max((len(s) for s in ids), default=1), DEPTH)
        counts: list[dict[str, int]] = [{} for _ in range(depth)]
        for s in ids:
            for i, char in enumerate(s[:depth]):
                counts[i][char] = counts[i].get(char, 0) + 1
        # A position that varies in the sample gets, with a small weight, every character seen at any varying
        # position: a sample misses a few characters of random ids per position, and a missing character would
        # squeeze all ids that have it there into one point. Constant positions (a "CUST-" prefix) keep theirs.
        varying = set().union(*(seen for seen in counts if len(seen) > 1))
        self.chars: list[str] = []  # per position: its characters, sorted
        self.starts: list[list[int]] = []  # per position: where each character's share begins
        self.weights: list[list[int]] = []  # per position: each character's share
        self.radix: list[int] = []  # per position: the sum of the shares
        for seen in counts:
            chars = sorted(seen.keys() | varying) if len(seen) > 1 else sorted(seen) or ["0"]
            # shares: the counts, shrunk halfway to even (a few hundred ids say little about rare characters)
            even = max(sum(seen.values()) // len(chars), 1)
            weights = [seen.get(char, 0) + even for char in chars]
            starts = [0]
            for weight in weights[:-1]:
                starts.append(starts[-1] + weight)
            self.chars.append("".join(chars))
            self.starts.append(starts)
            self.weights.append(weights)
            self.radix.append(starts[-1] + weights[-1])
        # rest[i]: the product of the radixes after position i
        self.rest = [1] * (depth + 1)
        for i in range(depth - 1, -1, -1):
            self.rest[i] = self.rest[i + 1] * self.radix[i]
        self.top = self.rest[0]

    def pos(self, s: str) -> int:
        low, scale = 0, 1  # the prefix's interval starts at low; scale = product of the shares taken so far
        for i, chars in enumerate(self.chars):
            if i >= len(s):
                return low
            k = bisect.bisect_left(chars, s[i])
            unit = scale * self.rest[i + 1]
            if k == len(chars) or chars[k] != s[i]:  # not in the sample here: just below the next character
                return low if k == 0 else low + self.starts[i][k] * unit - 1 if k < len(chars) else \
                    low + self.radix[i] * unit - 1
            low += self.starts[i][k] * unit
            scale *= self.weights[i][k]
        return low

    def string(self, p: int) -> str | None:
        """The first id-like string at or after position p (pos(string(p)) >= p), or None at or past the end."""
        if p >= self.top:
            return None
        chars: list[int] = []  # index of the character taken at each position
        low, scale = 0, 1
        for i in range(len(self.chars)):
            unit = scale * self.rest[i + 1]
            k = bisect.bisect_right(self.starts[i], (p - low) // unit) - 1
            chars.append(k)
            low += self.starts[i][k] * unit
            scale *= self.weights[i][k]
        if low < p:  # p lies inside the last character's share: take the next string of the same length
            i = len(chars) - 1
            while i >= 0 and chars[i] == len(self.chars[i]) - 1:
                chars.pop()
                i -= 1
            if i < 0:
                return None
            chars[i] += 1
        return "".join(self.chars[i][k] for i, k in enumerate(chars))


class Model:
    """How many ids lie between two positions: each sample id stands for `weight` ids, spread evenly over the
    gap between histogram cuts."""

    def __init__(self, sample: Sequence[str], weight: float):
        self.space = KeySpace(sample)
        positions = sorted(self.space.pos(s) for s in sample)
        cuts = sorted(set(positions[GAP_SAMPLES - 1::GAP_SAMPLES]) - {0})
        self.bounds = [0, *cuts, self.space.top]
        # ids per gap: its sample ids, plus half an id's worth so that no gap is taken for certainly empty
        self.counts = [weight * (bisect.bisect_left(positions, hi) - bisect.bisect_left(positions, lo) + 0.5)
                       for lo, hi in zip(self.bounds, self.bounds[1:], strict=False)]
        self.size = weight * len(sample)

    def expected(self, a: int, b: int) -> float:
        """Ids expected at positions [a, b)."""
        total = 0.0
        bounds = self.bounds
        i = max(bisect.bisect_right(bounds, a) - 1, 0)
        while i < len(self.counts) and bounds[i] < b:
            lo, hi = bounds[i], bounds[i + 1]
            overlap = min(hi, b) - max(lo, a)
            if overlap > 0:
                total += self.counts[i] * overlap / (hi - lo)
            i += 1
        return total

    def advance(self, a: int, count: float) -> int:
        """The smallest b > a such that about `count` ids are expected at positions [a, b); top if fewer remain."""
        bounds = self.bounds
        got = 0.0
        i = max(bisect.bisect_right(bounds, a) - 1, 0)
        while i < len(self.counts):
            lo, hi = bounds[i], bounds[i + 1]
            start = max(lo, a)
            if hi > start:
                part = self.counts[i] * (hi - start) / (hi - lo)
                if got + part >= count:
                    step = int((count - got) / self.counts[i] * (hi - lo)) + 1
                    return min(start + step, self.space.top)
                got += part
            i += 1
        return self.space.top
