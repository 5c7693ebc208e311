"""Redis state store: one Lua-scripted write per checkpoint (state + offset + fence check).

Keys per task share a hash tag, ``{prefix:topic:partition}``, so that in Redis Cluster they live
in one slot and the script stays atomic.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from streamdrift.errors import FencedError, StateError, StoreError
from streamdrift.state.base import Snapshot, TaskId

# KEYS[1] = task hash, KEYS[2] = fence counter
# ARGV = fence, state bytes, next offset, saved_at
# The whole check-and-write runs atomically inside Redis: no other client can interleave.
_SAVE_LUA = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then
  return {-1, current}
end
local stored = tonumber(redis.call('HGET', KEYS[1], 'offset') or '-1')
if tonumber(ARGV[3]) < stored then
  return {-2, stored}
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'offset', ARGV[3], 'fence', ARGV[1],
           'saved_at', ARGV[4])
return {1, current}
"""


class RedisStore:
    """State store on a Redis server (``redis://`` or ``rediss://``)."""

    def __init__(
        self,
        url: str,
        key_prefix: str = "streamdrift",
        *,
        socket_timeout: float = 5.0,
        client: redis.Redis | None = None,
    ) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self._client: redis.Redis = client or redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._save = self._client.register_script(_SAVE_LUA)

    def _keys(self, task: TaskId) -> tuple[str, str]:
        tag = f"{{{self.key_prefix}:{task.topic}:{task.partition}}}"
        return f"{tag}:task", f"{tag}:fence"

    def acquire(self, task: TaskId) -> int:
        _, fence_key = self._keys(task)
        try:
            return int(self._client.incr(fence_key))
        except redis.RedisError as exc:
            raise StoreError(f"Redis fence for {task} failed: {exc}") from exc

    def load(self, task: TaskId) -> Snapshot | None:
        task_key, _ = self._keys(task)
        try:
            raw: dict[bytes, bytes] = self._client.hgetall(task_key)  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise StoreError(f"Redis load of {task} failed: {exc}") from exc
        if not raw:
            return None
        try:
            return Snapshot(
                state=raw[b"state"],
                offset=int(raw[b"offset"]),
                fence=int(raw[b"fence"]),
                saved_at=float(raw.get(b"saved_at", b"0")),
            )
        except (KeyError, ValueError) as exc:
            raise StateError(
                f"checkpoint of {task} in Redis ({task_key}) is incomplete or corrupt: {exc!r}; "
                "delete the key to start that partition afresh"
            ) from exc

    def save(self, task: TaskId, fence: int, state: bytes, offset: int) -> None:
        keys = self._keys(task)
        try:
            result: Any = self._save(keys=list(keys), args=[fence, state, offset, time.time()])
        except redis.RedisError as exc:
            raise StoreError(f"Redis checkpoint of {task} failed: {exc}") from exc
        code, value = int(result[0]), int(result[1])
        if code == -1:
            raise FencedError(
                f"checkpoint of {task} refused: fence {fence} is stale (current {value}); "
                "another consumer owns this partition now"
            )
        if code == -2:
            raise StateError(
                f"checkpoint of {task} refused: offset {offset} is behind the saved {value}; "
                "offsets only move forward"
            )

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()
