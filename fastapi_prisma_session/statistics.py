"""`Statistics`: what a store has sent to its database, counted as it goes.

`store.statistics.statements` before and after a run of requests gives the statements per request: one
load per request that uses its session without coalescing, fewer with it (coalescing.py)."""

from __future__ import annotations


class Statistics:
    """What one store has sent to its database since it was made (`PrismaSessionStore.statistics`):
    counters that only grow, read by whoever wants them (a benchmark's statements per request)."""

    __slots__ = ("load_statements", "loads", "statements")

    def __init__(self) -> None:
        #: every statement sent: the request path's, each transaction's (its BEGIN and COMMIT too), each
        #: new connection's setup, the look at the table
        self.statements = 0
        #: sessions looked up by sid (a request's load, `get`)
        self.loads = 0
        #: the statements that looked them up: fewer than `loads` when loads were coalesced
        self.load_statements = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"Statistics({', '.join(f'{k}={v}' for k, v in self.as_dict().items())})"
