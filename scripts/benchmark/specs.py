"""The scenarios the driver runs: each one's parameters, row labels, targets and how many rounds,
and the rounds it collected."""

from __future__ import annotations

from dataclasses import dataclass, field

from .accuracy import ACCURACY_LIMIT
from .measure import Row

Round = list[Row] | str  # a round's rows, or why it could not run
Target = tuple[str, float]
PER_KEY_NAMES = 1_000_000
"""New names the per-key memory row acquires once each: ~12 s on the 2-core box (~9 us to make a name's
log, ~3 us to leak it), most of what the decision API's rows add to a run; ``--quick`` takes a tenth."""


@dataclass
class Spec:
    """One scenario and its rows' labels and targets: ``("ratio", x)``, ours' ops/s at least x times
    upstream's; ``("max", x)`` / ``("min", x)``, ours' value at most / at least x."""

    scenario: str
    params: Row
    labels: list[str]
    targets: list[Target | None]
    floored: bool = True  # judged against its backend's floor, measured after each round
    floor_kind: str = ""  # the floor in FLOORS it is judged against, when not its backend's
    upstream: bool = True
    rounds: int | None = None
    fresh: bool = False  # a new worker process for each round
    results: dict[str, list[Round]] = field(default_factory=dict)
    floors: dict[str, list[Round]] = field(default_factory=dict)

    @property
    def floor(self) -> str:
        """The key of its floor in FLOORS, or ``""``."""
        if not self.floored:
            return ""
        return self.floor_kind or str(self.params.get("backend", "memory"))

    @property
    def needs(self) -> str:
        """The server it runs on, or ``""``."""
        backend = str(self.params.get("backend"))
        return backend if backend in ("redis", "postgres") else ""


def specs(quick: bool) -> list[Spec]:
    n = 100_000 if quick else 1_000_000
    rn = 5_000 if quick else 10_000
    s, mem, redis = Spec, {"backend": "memory"}, {"backend": "redis"}
    tasks100 = {"tasks": 100, "loop": "asyncio"}
    rejected = ["rejected -> False", "rejected -> raise", "raise / False time", "floor: False + bare raise / False"]
    rows = [
        s("acquire", mem, ["memory, 1 rate"], [("ratio", 4)]),
        s("acquire", {**mem, "three": True}, ["memory, 3 rates"], [("ratio", 3)]),
        s("rejected", mem, rejected, [("ratio", 4), ("ratio", 4), ("max", 1.5), None]),
        s("keys", mem, ["10 000 keys, factory"], [None]),
        s("async", {**mem, **tasks100}, ["async 100 tasks, asyncio"], [("ratio", 3.5)]),
        s("async", {**mem, **tasks100, "loop": "trio"}, ["async 100 tasks, trio"], [None], upstream=False),
        s(
            "v3 async",
            {**mem, **tasks100},
            ["v3 async spelling, 100 tasks", "v3 async spelling / native AsyncLimiter"],
            [("ratio", 3.5), ("min", 0.8)],
        ),
        s(
            "acquire",
            redis,
            ["redis sync, 1 key", "redis sync / floor, interleaved", "redis round trips/acq"],
            [None, ("max", 1.15), ("max", 1)],
        ),
        s("async", {**redis, "tasks": 1, "loop": "asyncio"}, ["redis async, 1 task"], [None]),
        s(
            "async",
            {**redis, **tasks100},
            ["redis async, 100 tasks", "redis async / floor, 100 tasks"],
            [("ratio", 3), ("min", 0.8)],
            floor_kind="redis tasks",
        ),
        s("acquire", {"backend": "sqlite"}, ["sqlite file"], [("ratio", 20)]),
        s("acquire", {"backend": "postgres"}, ["postgresql"], [("ratio", 3)]),
        s("acquire", {"backend": "postgres", "durable": False}, ["postgresql, durable=False"], [("ratio", 5)]),
        s(
            "async",
            {"backend": "postgres", **tasks100},
            ["postgresql async, 100 tasks", "postgresql async / floor, 100 tasks"],
            [("ratio", 3), ("min", 0.8)],
            floor_kind="postgres tasks",
        ),
    ]
    # The decision API, ours only; three rounds: each ratio is already the median of alternating chunks.
    for backend in ("memory", "redis", "sqlite"):
        labels = [f"state() on a full bucket, {backend}", f"state / refused time, {backend}"]
        rows.append(s("state", {"backend": backend}, labels, [None, ("max", 1)], upstream=False, rounds=3))
    for mode in ("sync", "async"):
        labels = [f"reserve()+cancel(), memory {mode}", f"reserve()+cancel(): units left, {mode}"]
        rows.append(s("reserve", {**mem, "mode": mode}, labels, [None, ("max", 0)], upstream=False, rounds=3))
    names = PER_KEY_NAMES // 10 if quick else PER_KEY_NAMES
    labels = [f"per_key, {names:,} names: RSS peak", f"per_key, {names:,} names: RSS after leak+trim"]
    freed: list[Target | None] = [None, ("max", 5)]  # MiB after the leak, over the fresh worker's
    rows.append(s("per_key_memory", {"n": names}, labels, freed, floored=False, upstream=False, rounds=1, fresh=True))
    for weight in (1, 100):
        counts: Row = {"weight": weight, "n": n}
        rows.append(
            s("memory", counts, [f"memory/item, w{weight}"], [("max", 32)], floored=False, rounds=1, fresh=True)
        )
    for weight in (1, 100):
        counts = {**redis, "weight": weight, "n": rn}
        rows.append(
            s("redis_memory", counts, [f"redis memory/item, w{weight}"], [("max", 105)], floored=False, rounds=1)
        )
    for backend in ("memory", "redis", "sqlite", "postgres"):
        weights = {"backend": backend, "seconds": 0.6 if quick else 0.75}
        rows.append(s("weight", weights, [f"w100/w1 time, {backend}"], [("max", 1.1)], floored=False, rounds=3))
    for mode in ("thread", "task"):
        waiter = {"mode": mode, "seconds": 1.2 if quick else 2}
        rows.append(s("waiter", waiter, [f"key B while A waits, {mode}"], [("min", 80)], floored=False, rounds=3))
    for mode, who in (("threads", "4 threads"), ("tasks", "100 tasks")):
        for wait, how in ((False, "polling"), (True, "waiting")):
            run = {"mode": mode, "wait": wait, "windows": 2 if quick else 5}
            labels = [f"accuracy, {who} {how}: most in 1 s", f"accuracy, {who} {how}: % of ideal"]
            limits: list[Target | None] = [("max", ACCURACY_LIMIT), ("min", 98)]
            rows.append(s("accuracy", run, labels, limits, floored=False, rounds=1))
    return rows
