"""The join buffer in Redis (see :mod:`streamdrift.state.joins` for the semantics).

Per model five keys sharing the hash tag ``{prefix:join:model}`` (one Cluster slot, so each
script is atomic): ``preds`` (hash id -> packed prediction), ``times`` (sorted set id -> event
time), ``claims`` (hash id -> claim), ``expired`` (sorted set of evicted ids) and ``stats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from streamdrift.errors import StoreError
from streamdrift.state.joins import Entry, JoinStats, Remembered

__all__ = ["RedisJoins"]

# KEYS = preds, times, claims, expired, stats; ARGV = ttl, cap, then (id, value, time) triples.
_REMEMBER_LUA = """
local ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxt = tonumber(redis.call('HGET', KEYS[5], 'max_time') or '')
for i = 3, #ARGV, 3 do
  local t = tonumber(ARGV[i + 2])
  if maxt == nil or t > maxt then maxt = t end
end
if maxt == nil then return {0, 0, 0, redis.call('HLEN', KEYS[1])} end
local cutoff = maxt - ttl
local added = 0
for i = 3, #ARGV, 3 do
  local id, t = ARGV[i], tonumber(ARGV[i + 2])
  if t >= cutoff and not redis.call('ZSCORE', KEYS[4], id) then
    added = added + redis.call('HSET', KEYS[1], id, ARGV[i + 1])
    redis.call('ZADD', KEYS[2], ARGV[i + 2], id)
  end
end
redis.call('HSET', KEYS[5], 'max_time', string.format('%.17g', maxt))
redis.call('HINCRBY', KEYS[5], 'remembered', added)
local function evict(ids)
  local unlabelled = 0
  for _, id in ipairs(ids) do
    local t = redis.call('ZSCORE', KEYS[2], id)
    if redis.call('HDEL', KEYS[3], id) == 0 then unlabelled = unlabelled + 1 end
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[4], t, id)
  end
  redis.call('HINCRBY', KEYS[5], 'expired', unlabelled)
  return unlabelled
end
local limit = '(' .. string.format('%.17g', cutoff)
local by_ttl = evict(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', limit))
local by_cap = 0
local n = redis.call('ZCARD', KEYS[2])
if n > cap then by_cap = evict(redis.call('ZRANGE', KEYS[2], 0, n - cap - 1)) end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. string.format('%.17g', cutoff - ttl))
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(cap + 1))
return {added, by_ttl, by_cap, redis.call('HLEN', KEYS[1])}
"""

# KEYS = preds, claims, expired, stats; ARGV = (id, claim) pairs.
# Returns the model's newest prediction time, then {status, value} pairs.
_CLAIM_LUA = """
local out = {redis.call('HGET', KEYS[4], 'max_time') or ''}
for i = 1, #ARGV, 2 do
  local id, c = ARGV[i], ARGV[i + 1]
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    local prev = redis.call('HGET', KEYS[2], id)
    if not prev then
      redis.call('HSET', KEYS[2], id, c)
      redis.call('HINCRBY', KEYS[4], 'labelled', 1)
      prev = c
    end
    if prev == c then out[#out + 1] = 1 else out[#out + 1] = 2 end
    out[#out + 1] = v
  elseif redis.call('ZSCORE', KEYS[3], id) then
    out[#out + 1] = 3
    out[#out + 1] = ''
  else
    out[#out + 1] = 0
    out[#out + 1] = ''
  end
end
return out
"""

# Large batches are split so that one script call stays short (Redis runs scripts alone).
_CHUNK = 2000


class RedisJoins:
    """Mixed into ``RedisStore``: needs ``self._client`` and ``self.key_prefix``."""

    _client: redis.Redis
    key_prefix: str

    def _join_scripts(self) -> tuple[Any, Any]:
        scripts = getattr(self, "_join_script_cache", None)
        if scripts is None:
            scripts = (
                self._client.register_script(_REMEMBER_LUA),
                self._client.register_script(_CLAIM_LUA),
            )
            self._join_script_cache = scripts
        return scripts

    def _join_keys(self, model: str) -> list[str]:
        tag = f"{{{self.key_prefix}:join:{model}}}"
        return [f"{tag}:{name}" for name in ("preds", "times", "claims", "expired", "stats")]

    def remember(self, model: str, entries: Sequence[Entry], ttl: float, cap: int) -> Remembered:
        script, _ = self._join_scripts()
        keys = self._join_keys(model)
        added = by_ttl = by_cap = size = 0
        try:
            for lo in range(0, max(len(entries), 1), _CHUNK):
                args: list[Any] = [repr(float(ttl)), int(cap)]
                for event_id, value, t in entries[lo : lo + _CHUNK]:
                    args += [event_id, value, repr(float(t))]
                result = script(keys=keys, args=args)
                added += int(result[0])
                by_ttl += int(result[1])
                by_cap += int(result[2])
                size = int(result[3])
        except redis.RedisError as exc:
            raise StoreError(f"Redis join buffer write for model {model!r} failed: {exc}") from exc
        return Remembered(added, by_ttl, by_cap, size)

    def claim(
        self, model: str, requests: Sequence[tuple[str, str]]
    ) -> tuple[list[tuple[int, bytes]], float]:
        _, script = self._join_scripts()
        k = self._join_keys(model)
        keys = [k[0], k[2], k[3], k[4]]
        out: list[tuple[int, bytes]] = []
        newest = float("-inf")
        try:
            for lo in range(0, max(len(requests), 1), _CHUNK):
                args = [x for pair in requests[lo : lo + _CHUNK] for x in pair]
                flat = script(keys=keys, args=args)
                newest = float(flat[0]) if flat[0] else newest
                out += [(int(flat[i]), bytes(flat[i + 1])) for i in range(1, len(flat), 2)]
        except redis.RedisError as exc:
            raise StoreError(f"Redis label lookup for model {model!r} failed: {exc}") from exc
        return out, newest

    def join_stats(self, model: str) -> JoinStats:
        try:
            raw = self._client.hmget(self._join_keys(model)[4], "remembered", "labelled", "expired")
        except redis.RedisError as exc:
            raise StoreError(f"Redis join stats for model {model!r} failed: {exc}") from exc
        return JoinStats(*(int(x or 0) for x in raw))

    def claimed_ids(self, model: str) -> dict[str, str]:
        """Event id -> claim of the predictions that got a label (tests, introspection)."""
        raw: Any = self._client.hgetall(self._join_keys(model)[2])
        return {k.decode(): v.decode() for k, v in raw.items()}

    def buffered(self, model: str) -> int:
        return int(self._client.hlen(self._join_keys(model)[0]))
