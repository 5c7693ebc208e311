"""Redis state store: one Lua-scripted write per checkpoint (state + offset + fence check).

Keys per task share a hash tag, ``{prefix:topic:partition}``, so that in Redis Cluster they live
in one slot and the script stays atomic.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from streamdrift.errors import FencedError, StateError, StateLostError, StoreError
from streamdrift.state.base import Snapshot, TaskId
from streamdrift.state.redis_joins import RedisJoins

_log = logging.getLogger(__name__)

# KEYS[1] = task hash, KEYS[2] = fence counter
# ARGV = fence, state bytes, next offset, saved_at, offset of the writer's last checkpoint or -1
# The whole check-and-write runs atomically inside Redis: no other client can interleave.
# -1: fenced (a newer owner). -2: offset behind the stored one. -3: Redis lost this task's
# checkpoint: the fence key is gone or older than ours (restarted empty, restored from an older
# snapshot, keys deleted or evicted), or the writer's last checkpoint is no longer there.
_SAVE_LUA = """
local raw = redis.call('GET', KEYS[2])
if not raw then
  return {-3, -1}
end
local current = tonumber(raw)
if current > tonumber(ARGV[1]) then
  return {-1, current}
end
if current < tonumber(ARGV[1]) then
  return {-3, current}
end
local stored = tonumber(redis.call('HGET', KEYS[1], 'offset') or '-1')
if stored < tonumber(ARGV[5]) then
  return {-3, stored}
end
if tonumber(ARGV[3]) < stored then
  return {-2, stored}
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'offset', ARGV[3], 'fence', ARGV[1],
           'saved_at', ARGV[4])
return {1, current}
"""

# KEYS as above; ARGV = fence. Deletes the task's checkpoint if the caller still owns the task.
_DISCARD_LUA = """
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""


class RedisStore(RedisJoins):
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
        self._discard = self._client.register_script(_DISCARD_LUA)

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

    def save(
        self, task: TaskId, fence: int, state: bytes, offset: int, previous: int | None = None
    ) -> None:
        keys = self._keys(task)
        last = -1 if previous is None else previous
        try:
            result: Any = self._save(
                keys=list(keys), args=[fence, state, offset, time.time(), last]
            )
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
        if code == -3:
            if value == -1 and previous is not None:
                what = f"its checkpoint at offset {previous} is gone"
            elif value == -1:
                what = "its fence key is gone"
            else:
                what = f"found {value} where fence {fence} / offset {last} was expected"
            raise StateLostError(
                f"Redis lost the state of {task}: {what} (Redis restarted empty, restored from "
                "an older snapshot, or keys deleted or evicted)"
            )

    def discard(self, task: TaskId, fence: int) -> None:
        """Delete the task's checkpoint (a corrupt one), if ``fence`` still owns the task."""
        try:
            done = int(self._discard(keys=list(self._keys(task)), args=[fence]))
        except redis.RedisError as exc:
            raise StoreError(f"Redis delete of {task} failed: {exc}") from exc
        if not done:
            raise FencedError(f"delete of {task} refused: fence {fence} is stale")

    def verify(self) -> None:
        """Fail fast, at start, on what retrying cannot fix: refused credentials or a TLS
        setup the server does not accept. An unreachable server is only logged here (the
        service retries it with backoff and reports not ready)."""
        from streamdrift._config_models import mask_url

        where = mask_url(self.url)
        try:
            self._client.ping()
        except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
            raise StoreError(
                f"Redis at {where} refused the credentials ({_auth_problem(exc)}); check the "
                "user and password in redis.url (or STREAMDRIFT_REDIS__URL[_FILE])"
            ) from exc
        except redis.ConnectionError as exc:
            if "SSL" in str(exc) or "certificate" in str(exc):
                raise StoreError(
                    f"Redis at {where}: TLS failed ({exc}); for a private CA add "
                    "?ssl_ca_certs=/path/ca.pem to the rediss:// URL"
                ) from exc
            _log.warning("Redis at %s is not reachable yet (%s); retrying", where, exc)
        except redis.RedisError as exc:
            _log.warning("Redis at %s: %s; retrying", where, exc)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()


def _auth_problem(exc: Exception) -> str:
    text = str(exc)
    if "HELLO must be called" in text or "NOAUTH" in text:
        return "the server requires a password and the URL has none"
    return text
