"""The messages ranks exchange over MPI, by tag, with the shape of each payload."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any


class Tag(IntEnum):
    WELCOME = 10  # 0 -> rank r         {"host": str, "pid": int}: first thing, so every rank can
                  #                     see rank 0's process die even before the plan
    HELLO = 11    # rank r -> 0        {"host": str, "pid": int}
    PLAN = 12     # 0 -> rank r        {"plan": Plan | None, "tls": JobTLS | None, "settings": Settings,
                  #                     "job_id": str, "problem": str | None}
    READY = 13    # scheduler -> 0, workers  {"address": str, "dashboard": (host, port) | None}
                  #                          or {"error": str}
    STOP = 14     # 0 (or the scheduler, once 0 is gone) -> rank r
                  #                    {"reason": str, "finalize": bool}: False once a rank died
    BYE = 15      # rank r -> 0        {"role": str}
    UNPARK = 16   # scheduler -> worker rank   {}
    STATE = 17    # worker rank -> scheduler   StateReport
    DRAINING = 18  # 0 -> scheduler        {"reason": str}: the workers are being stopped
    LOST = 19     # 0 -> scheduler        {"ranks": [int]}: these worker ranks died
    GO = 20       # 0 -> rank r           {}: Jupyter has bound its port; open Dask's listeners now


class RankState(str, Enum):
    """What a worker rank reports about its worker (STATE)."""

    ACTIVE = "active"  # its worker started and registered with the scheduler
    PARKED = "parked"  # its worker ended; the rank waits for UNPARK
    LOST = "lost"      # it cannot run a worker (failed to start, no scratch space, crashed)


@dataclass(frozen=True)
class StateReport:
    """The STATE message: a worker rank's news, with why when it is lost."""

    state: RankState
    reason: str = ""

    @classmethod
    def parse(cls, payload: Any) -> StateReport:
        """A `StateReport`, also from the older ``{"state": str}`` payload."""
        if isinstance(payload, StateReport):
            return payload
        return cls(RankState(payload["state"]), str(payload.get("reason", "")))
