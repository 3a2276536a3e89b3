"""Rollout state and the deciding lease in Redis: every replica reads the same step, exactly one decides.

The lease is a key set with NX and a expiry (PX) and renewed by its holder only; a replica that dies loses
it after the expiry and another takes over. States are replaced whole by a script that checks the revision,
so an admin change and a decision made at the same moment cannot overwrite each other.
"""

from __future__ import annotations

from service.routing.redis_link import KEY_PREFIX, RedisLink

STATE = f"{KEY_PREFIX}rollout:"
LEASE = f"{KEY_PREFIX}rollout-lease"

WRITE = """
local stored = redis.call('GET', KEYS[1])
local revision = 0
if stored then revision = cjson.decode(stored).revision end
if revision ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
HOLD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLedger:
    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._write = link.client.register_script(WRITE)
        self._hold = link.client.register_script(HOLD)
        self._release = link.client.register_script(RELEASE)

    async def read(self, experiment: str) -> str | None:
        value: str | None = await self._link.call(self._link.client.get(f"{STATE}{experiment}"))
        return value

    async def write(self, experiment: str, state: str, replaces: int) -> bool:
        return bool(await self._link.call(self._write(keys=[f"{STATE}{experiment}"], args=[state, replaces])))

    async def hold_lease(self, holder: str, ttl_s: float) -> bool:
        return bool(await self._link.call(self._hold(keys=[LEASE], args=[holder, int(ttl_s * 1000)])))

    async def release_lease(self, holder: str) -> None:
        await self._link.call(self._release(keys=[LEASE], args=[holder]))
