"""The budget ledger in Redis, for budgets that span hosts: `budget_backend = "redis://host:6379/0"`.

Each budget instance is a hash `tokentrail:budget:<key>:<period>` (spent, floor, reserved,
fired; a rolling window's spend in fields b<bucket>) and a sorted set `...:res` of its
reservations scored by expiry. Reserve and settle are one Lua script each, so the check and
the update are atomic across every client. Expiry is the caller's clock (ms), passed in: a
reservation whose process died stops counting once any client's clock passes it.

Lua numbers are doubles: amounts are exact up to 2**53 nano-dollars ($9,007,199) per budget
instance and period (updates use HINCRBY, exact to 2**63).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Sequence
from typing import Any

from .ledger import BUCKETS

__all__ = ["RedisLedger"]

PREFIX = "tokentrail:budget:"
_MS = 1_000_000

_COMMON = """
local function spent(slot, rolling, now)
  local s = 0
  if rolling == 0 then
    s = tonumber(redis.call('HGET', slot, 'spent') or '0')
  else
    local width = math.floor(rolling / @B@)
    local cur = math.floor(now / width)
    for id = cur - @B@, cur do
      s = s + tonumber(redis.call('HGET', slot, 'b' .. id) or '0')
    end
  end
  local f = tonumber(redis.call('HGET', slot, 'floor') or '0')
  if f > s then return f end
  return s
end
local function purge(slot, res, now)
  local old = redis.call('ZRANGEBYSCORE', res, '-inf', now)
  if #old > 0 then
    local total = 0
    for _, m in ipairs(old) do total = total + tonumber(string.match(m, ':(%d+)$')) end
    redis.call('HINCRBY', slot, 'reserved', -total)
    redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
  end
end
""".replace("@B@", str(BUCKETS))

# KEYS: slot, res per item. ARGV: now_ms, expires_ms, rid, then per item: limit, block, amount, rolling_ms, expire_in_ms
_RESERVE = _COMMON + """
local now, exp, rid = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local n = #KEYS / 2
for i = 1, n do
  local slot, res, o = KEYS[2*i-1], KEYS[2*i], 3 + (i-1)*5
  purge(slot, res, now)
  if ARGV[o+2] == '1' then
    local committed = spent(slot, tonumber(ARGV[o+4]), now) + tonumber(redis.call('HGET', slot, 'reserved') or '0')
    if tonumber(ARGV[o+3]) > tonumber(ARGV[o+1]) - committed then return {i, committed} end
  end
end
for i = 1, n do
  local slot, res, o = KEYS[2*i-1], KEYS[2*i], 3 + (i-1)*5
  local amount = ARGV[o+3]
  if amount ~= '0' then
    redis.call('HINCRBY', slot, 'reserved', amount)
    redis.call('ZADD', res, exp, rid .. ':' .. i .. ':' .. amount)
  end
  if ARGV[o+5] ~= '0' then
    redis.call('PEXPIRE', slot, ARGV[o+5])
    redis.call('PEXPIRE', res, ARGV[o+5])
  end
end
return {0, 0}
"""

# ARGV: now_ms, rid, then per item: reserved, rolling_ms, expire_in_ms, cost, thresholds (n, t1..tn)
_SETTLE = _COMMON + """
local now, rid = tonumber(ARGV[1]), ARGV[2]
local out = {}
local o = 3
for i = 1, #KEYS / 2 do
  local slot, res = KEYS[2*i-1], KEYS[2*i]
  local reserved, rolling, expire_at, cost = ARGV[o], tonumber(ARGV[o+1]), ARGV[o+2], ARGV[o+3]
  o = o + 1
  local nt = tonumber(ARGV[o+3])
  if reserved ~= '0' and redis.call('ZREM', res, rid .. ':' .. i .. ':' .. reserved) == 1 then
    redis.call('HINCRBY', slot, 'reserved', -tonumber(reserved))
  end
  if cost ~= '0' then
    if rolling == 0 then
      redis.call('HINCRBY', slot, 'spent', cost)
    else
      local width = math.floor(rolling / @B@)
      local cur = math.floor(now / width)
      redis.call('HINCRBY', slot, 'b' .. cur, cost)
      redis.call('HDEL', slot, 'b' .. (cur - @B@ - 1))
      expire_at = tostring(math.floor(2 * rolling))
    end
  end
  if expire_at ~= '0' then redis.call('PEXPIRE', slot, expire_at) end
  local s = spent(slot, rolling, now)
  local before = tonumber(redis.call('HGET', slot, 'fired') or '0')
  local fired = before
  if rolling ~= 0 then
    while fired > 0 and s < tonumber(ARGV[o+3+fired]) do fired = fired - 1 end
    before = fired
  end
  while fired < nt and s >= tonumber(ARGV[o+4+fired]) do fired = fired + 1 end
  redis.call('HSET', slot, 'fired', fired)
  table.insert(out, s)
  table.insert(out, before)
  table.insert(out, fired)
  o = o + 4 + nt
end
return out
""".replace("@B@", str(BUCKETS))

# ARGV: rid, then per item reserved
_RELEASE = """
for i = 1, #KEYS / 2 do
  local amount = ARGV[i+1]
  if amount ~= '0' and redis.call('ZREM', KEYS[2*i], ARGV[1] .. ':' .. i .. ':' .. amount) == 1 then
    redis.call('HINCRBY', KEYS[2*i-1], 'reserved', -tonumber(amount))
  end
end
return 0
"""

# KEYS: slot. ARGV: floor, replace (1 for rolling windows), expire_in_ms
_FLOOR = """
local old = tonumber(redis.call('HGET', KEYS[1], 'floor') or '0')
if ARGV[2] == '1' or tonumber(ARGV[1]) > old then redis.call('HSET', KEYS[1], 'floor', ARGV[1]) end
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 0
"""

# KEYS: slot, res. ARGV: now_ms, rolling_ms
_FIGURES = _COMMON + """
local now = tonumber(ARGV[1])
purge(KEYS[1], KEYS[2], now)
return {spent(KEYS[1], tonumber(ARGV[2]), now), tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0'), tonumber(redis.call('HGET', KEYS[1], 'fired') or '0')}
"""

_WEEK_MS = 7 * 86400 * 1000


class RedisLedger:
    carried: list[tuple[Any, int, int]] = []  # rollover needs the file ledger (the manager says so)

    def __init__(self, url: str) -> None:
        from .._internal import optional

        with optional("the Redis budget ledger"):
            import redis
        self.url = url
        self.name = f"redis {url.rsplit('@', 1)[-1]}"
        self._redis = redis
        self._connect()
        self._ids = itertools.count()
        self._me = uuid.uuid4().hex[:12]

    def _connect(self) -> None:
        self._r = self._redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        self._reserve = self._r.register_script(_RESERVE)
        self._settle = self._r.register_script(_SETTLE)
        self._release = self._r.register_script(_RELEASE)
        self._floor = self._r.register_script(_FLOOR)
        self._figures = self._r.register_script(_FIGURES)

    def reopen(self) -> None:
        self._connect()  # a forked child must not share the parent's sockets
        self._me = uuid.uuid4().hex[:12]

    def close(self) -> None:
        try:
            self._r.close()
        except Exception:  # noqa: S110 (closing a dead connection)
            pass

    @staticmethod
    def _keys(item: Any) -> tuple[str, str]:
        base = f"{PREFIX}{item.lkey.hex()}:{item.window_key}"
        return base, base + ":res"

    @staticmethod
    def _expire_at(item: Any, now: int) -> int:
        """Milliseconds the instance's keys live (relative: Redis's clock is not the caller's):
        calendar periods a week past their end; total forever (0); rolling set by settle."""
        return 0 if item.rolling_ns or item.hi >= 2**62 else max(item.hi - now, 0) // _MS + _WEEK_MS

    def reserve(self, items: Sequence[Any], amounts: list[int], now: int, expires: int) -> str:
        rid = f"{self._me}-{os.getpid()}-{next(self._ids)}"
        keys: list[str] = []
        args: list[Any] = [now // _MS, expires // _MS, rid]
        for it, amount in zip(items, amounts, strict=True):
            keys.extend(self._keys(it))
            args.extend((it.limit_n, 1 if it.block else 0, amount, it.rolling_ns // _MS, self._expire_at(it, now)))
        index, committed = self._reserve(keys=keys, args=args)
        if index:
            from .ledger import Refused

            raise Refused(int(index) - 1, int(committed))
        return rid

    def settle(self, handle: str, items: Sequence[Any], amounts: list[int], costs: list[int], now: int) -> list[tuple[int, int, int, int]]:
        keys: list[str] = []
        args: list[Any] = [now // _MS, handle]
        for it, amount, cost in zip(items, amounts, costs, strict=True):
            keys.extend(self._keys(it))
            args.extend((amount, it.rolling_ns // _MS, self._expire_at(it, now), cost, len(it.thresholds_n), *it.thresholds_n))
        flat = [int(v) for v in self._settle(keys=keys, args=args)]
        return [(flat[i], flat[i + 1], flat[i + 2], 0) for i in range(0, len(flat), 3)]  # no rollover here

    def release(self, handle: str, items: Sequence[Any], amounts: list[int]) -> None:
        keys: list[str] = []
        for it in items:
            keys.extend(self._keys(it))
        self._release(keys=keys, args=[handle, *amounts])

    def carry(self, item: Any, now: int) -> int:
        return 0

    def claim_forecast(self, item: Any, now: int) -> bool:
        # the hash is per period: the first HSETNX in it wins, on every host
        return bool(self._r.hsetnx(self._keys(item)[0], "forecast", 1))

    def set_floor(self, item: Any, n: int, now: int) -> None:
        self._floor(keys=[self._keys(item)[0]], args=[n, 1 if item.rolling_ns else 0, self._expire_at(item, now)])

    def figures(self, item: Any, now: int) -> tuple[int, int]:
        spent, reserved, _ = self._figures(keys=list(self._keys(item)), args=[now // _MS, item.rolling_ns // _MS])
        return int(spent), int(reserved)

    def fired(self, item: Any, now: int) -> int:
        return int(self._figures(keys=list(self._keys(item)), args=[now // _MS, item.rolling_ns // _MS])[2])
