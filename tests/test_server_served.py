"""What the server remembers of the model.json versions it served stays bounded,
and still lets a reader of a recent version fetch that version's weight files."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tfjsfs.server.served import ServedVersions


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_version_is_forgotten_once_not_served_for_keep_for_seconds():
    clock = Clock()
    served = ServedVersions(keep_for=30, clock=clock)
    served.note("m/model.json", "v1", ["a.bin"])
    clock.now += 20
    served.note("m/model.json", "v2", ["b.bin"])
    assert served.named("m/model.json", "a.bin") and served.named("m/model.json", "b.bin")
    clock.now += 20  # v1 last served 40 s ago, v2 20 s ago
    served.note("n/model.json", "v1", ["c.bin"])
    assert not served.named("m/model.json", "a.bin")
    assert served.named("m/model.json", "b.bin") and served.named("n/model.json", "c.bin")
    assert not served.named("n/model.json", "b.bin")  # names are per bundle
    clock.now += 20
    assert served.known("m/model.json", "v2")  # served again: kept 30 s more
    clock.now += 15  # n's v1: 35 s, m's v2: 15 s
    served.note("o/model.json", "v1", [])
    assert served.named("m/model.json", "b.bin") and not served.named("n/model.json", "c.bin")
    assert len(served) == 2


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 40), st.floats(0, 5)), max_size=300))
def test_never_more_than_most_and_the_newest_version_is_always_known(events):
    clock = Clock()
    served = ServedVersions(keep_for=10, most=16, clock=clock)
    for model, version, pause in events:
        clock.now += pause
        path = f"m{model}/model.json"
        served.note(path, f"v{version}", [f"{version}.bin"])
        assert len(served) <= 16
        assert served.named(path, f"{version}.bin") and served.known(path, f"v{version}")
    assert len(served._by_path) <= 16
    assert sum(map(len, served._by_path.values())) == len(served)
