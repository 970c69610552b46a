"""What MPICluster knows of the job's worker pool: `WorkerPool.info`'s reply, typed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MOVING = ("starting", "parking")  # phases on the way up or down


@dataclass(frozen=True)
class RankView:
    name: str
    host: str
    state: str  # starting | active | parking | parked | lost


@dataclass(frozen=True)
class PoolView:
    job_id: str
    hosts: tuple[str, ...]
    limit: int
    target: int
    active: int
    ranks: dict[int, RankView] = field(default_factory=dict)
    dashboard: tuple[str, int] | None = None
    request: int | None = None
    problem: str = ""
    replaced: bool = False

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> PoolView:
        dash = info.get("dashboard")
        return cls(
            job_id=str(info["job_id"]),
            hosts=tuple(info["hosts"]),
            limit=int(info["limit"]),
            target=int(info["target"]),
            active=int(info["active"]),
            ranks={int(r): RankView(v["name"], v["host"], v["state"])
                   for r, v in info["ranks"].items()},
            dashboard=(str(dash[0]), int(dash[1])) if dash else None,
            request=info.get("request"),
            problem=str(info.get("problem") or ""),
            replaced=bool(info.get("replaced")),
        )

    def count(self, *states: str) -> int:
        return sum(v.state in states for v in self.ranks.values())

    @property
    def settled(self) -> bool:
        return not self.count(*MOVING)
