"""The API simulator: event store, seeded traffic, injected faults, loopback HTTP server.

An independent oracle: it imports nothing from the exporter (own signature check, field names,
totals and clock), so the exporter's mistakes cannot be its mistakes too.
"""

from exporter.simulator.buckets import BucketPolicy
from exporter.simulator.build import build_simulator, demo_targets
from exporter.simulator.catalog import Catalog, SimKey, SimModel
from exporter.simulator.faults import Fault, FaultKind, FaultPlan
from exporter.simulator.server import SimulatorServer
from exporter.simulator.stats import StatsSnapshot
from exporter.simulator.store import Event, EventStore
from exporter.simulator.traffic import TargetSpec, TrafficGenerator

__all__ = [
    "BucketPolicy",
    "Catalog",
    "Event",
    "EventStore",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "SimKey",
    "SimModel",
    "SimulatorServer",
    "StatsSnapshot",
    "TargetSpec",
    "TrafficGenerator",
    "build_simulator",
    "demo_targets",
]
