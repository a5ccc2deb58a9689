"""The id model that sizes list windows: it may be inaccurate, but never unordered (windows rely on it)."""

import random
import string
import uuid

import pytest

from app.customers.keyset import KeySpace, Model

rnd = random.Random(3)
SCHEMES = {
    "hex": ["".join(rnd.choice("0123456789abcdefABCDEF") for _ in range(15)) for _ in range(3000)],
    "sequential": [f"CUST-{i:07d}" for i in range(3000)],
    "decimal": [str(i) for i in range(3000)],
    "uuid": [uuid.UUID(int=rnd.getrandbits(128)).hex for _ in range(3000)],
    "mixed": ["a", "a-1", "a.1", "", "é", "ü-2", "10", "9", "\U0010ffff", "a\x00", "zz" * 40]
    + ["".join(rnd.choice(string.printable + "éü") for _ in range(rnd.randint(1, 20))) for _ in range(3000)],
}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_positions_never_decrease_along_the_id_order(scheme: str) -> None:
    ids = SCHEMES[scheme]
    space = KeySpace(rnd.sample(ids, 60))
    probes = sorted({*ids, "", "\x00", "~", "é", "\U0010ffff", *(s[:3] for s in ids[:100])})
    positions = [space.pos(s) for s in probes]
    assert positions == sorted(positions)
    assert all(0 <= p < space.top for p in positions)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_string_at_a_position_is_at_or_after_it(scheme: str) -> None:
    space = KeySpace(rnd.sample(SCHEMES[scheme], 60))
    for p in [0, 1, space.top - 1, *(rnd.randrange(space.top) for _ in range(2000))]:
        s = space.string(p)
        assert s is None or space.pos(s) >= p
    assert space.string(space.top) is None


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_window_is_about_the_size_asked_for(scheme: str) -> None:
    ids = sorted(SCHEMES[scheme])
    model = Model(sorted(rnd.sample(ids, 200)), len(ids) / 200)
    assert model.size == pytest.approx(len(ids))
    sizes = []
    for low in rnd.sample(ids, 200):
        start = model.space.pos(low)
        end = model.advance(start, 50)
        assert end > start
        assert model.expected(start, end) == pytest.approx(50, rel=0.05) or end == model.space.top
        high = model.space.string(end)
        assert high is None or high > low
        sizes.append(sum(low < s < high for s in ids) if high is not None else None)
    got = sorted(size for size in sizes if size is not None)
    assert 25 <= got[len(got) // 2] <= 100  # a sizing, not a promise: the median window is near 50


def test_an_empty_or_one_id_sample_still_maps_everything() -> None:
    for sample in ([], ["x"], ["x", "x"]):
        space = KeySpace(sample)
        assert space.pos("") <= space.pos("a") <= space.pos("x") <= space.pos("z")
        assert space.string(0) is not None
