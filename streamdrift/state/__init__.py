"""State stores: where each task's detector bank and position are checkpointed."""

from streamdrift.state.base import Snapshot, StateStore, TaskId
from streamdrift.state.memory import MemoryStore

__all__ = ["MemoryStore", "Snapshot", "StateStore", "TaskId"]
