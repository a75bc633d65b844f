"""What the simulator does with one API request: the Outcome, and the faults that skip the body."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.simulator.faults import Fault, FaultKind


@dataclass(frozen=True)
class Outcome:
    """What to do with one API request: wait ``delay``, then answer or drop the connection."""

    delay: float = 0.0
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    drop: FaultKind | None = None  # RESET or CLOSE: no response at all
    retcode: int | None = None
    repeat: int = 1  # the body is sent this many times over (a huge answer, never in memory)


def transport_outcome(fault: Fault | None, delay: float) -> Outcome | None:
    """The outcome of a fault that never reaches a JSON body, else None."""
    if fault is None:
        return None
    if fault.kind is FaultKind.HTTP:
        retry = fault.retry_after if fault.retry_after is not None else 1.0
        headers = (("Retry-After", f"{retry:g}"),) if fault.status == 429 else ()
        text = f"simulated HTTP {fault.status}\n".encode()
        return Outcome(delay, fault.status, text, "text/plain", headers)
    if fault.kind is FaultKind.CRAFTED:
        name, _, value = (fault.header or "").partition(":")
        headers = ((name.strip(), value.strip()),) if fault.header else ()
        return Outcome(delay, fault.status, fault.body.encode("utf-8", "surrogatepass"),
                       headers=headers, repeat=fault.repeat)
    if fault.kind is FaultKind.TIMEOUT and fault.then == "drop":
        return Outcome(delay + fault.delay, drop=FaultKind.CLOSE)
    if fault.kind in (FaultKind.RESET, FaultKind.CLOSE):
        return Outcome(delay, drop=fault.kind)
    return None
