"""The Lua scripts of several instances (SCALEOUT.md): each atomic step on one channel's keys,
all of which share the channel's hash tag (core/cluster_wire.py names them).

Presence keys, in the order every presence script takes them: KEYS[1] m (HASH entity ->
record JSON), KEYS[2] o (ZSET entity -> seq: the join order), KEYS[3] n (HASH entity ->
connections on every instance), KEYS[4] seq (the channel's counter), KEYS[5] h (HASH sid ->
entity of one instance), KEYS[6] w (HASH entity -> 1: member_added was announced),
KEYS[7] log (LIST of the last LOG_KEEP changes, as published), KEYS[8] at (HASH instance ->
the last seq its shard applied: a restarted shard tells its replayed members what they
missed from there), KEYS[9] the channel's pub/sub channel.

Webhooks (PUSHER.md 9) are decided here too, once per cluster-wide transition: a channel's
occupied (`pushy:w:{C}` set) and a member's added (its field of w) are announced when they
were not announced before; their departures only when a check `hold` seconds later (asked
by the shard that saw the departure) still finds them gone, so a return within the hold,
on any instance, cancels the departure and is itself not announced. An entity is a Pushy member
id or a Pusher user key; a Pusher user is added with its first connection anywhere and
removed with its last. Every change INCRs seq and PUBLISHes ["a", seq, entity, record, sid]
or ["r", seq, entity, record]. A channel's counter outlives its last member by a day, so
that sequence numbers never go back while an instance may still listen.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


# An instance's local subscription count of one channel (0: it has none). Returns 1 when
# this made the channel occupied cluster-wide, -1 when it made it vacant, else 0.
# KEYS: the occupancy hash, the channel's webhook flag; ARGV: instance, count, "1" when
# occupancy webhooks are wanted (then 1 is returned only if occupied was not announced yet,
# 2 for a return within a vacate's hold).
COUNT = Script("count", """
local before = redis.call('HLEN', KEYS[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local after = redis.call('HLEN', KEYS[1])
if before == 0 and after > 0 then
  if ARGV[3] == '1' and not redis.call('SET', KEYS[2], '1', 'NX') then return 2 end
  return 1
end
if before > 0 and after == 0 then return -1 end
return 0
""")

# KEYS as COUNT's. 1 when the channel is still vacant and its occupied was announced: now
# its vacated is.
VACANT = Script("vacant", """
if redis.call('HLEN', KEYS[1]) == 0 and redis.call('DEL', KEYS[2]) == 1 then return 1 end
return 0
""")

_SEQ = "tonumber(redis.call('GET', KEYS[4]) or '0')"

LOG_KEEP = 256  # presence changes kept per channel for restarted shards' catch-up

# Publish a change and keep it in the channel's log.
_CHANGED = """
local function changed(message)
  redis.call('PUBLISH', KEYS[9], message)
  redis.call('RPUSH', KEYS[7], message)
  redis.call('LTRIM', KEYS[7], -""" + str(LOG_KEEP) + """, -1)
end
"""

# Forget one connection (sid) of this instance: the entity leaves with its last connection.
_LEAVE = _CHANGED + """
local function leave(sid)
  local entity = redis.call('HGET', KEYS[5], sid)
  if not entity then return nil end
  redis.call('HDEL', KEYS[5], sid)
  if redis.call('HINCRBY', KEYS[3], entity, -1) > 0 then return nil end
  redis.call('HDEL', KEYS[3], entity)
  local record = redis.call('HGET', KEYS[1], entity) or '{}'
  redis.call('HDEL', KEYS[1], entity)
  redis.call('ZREM', KEYS[2], entity)
  local s = redis.call('INCR', KEYS[4])
  if redis.call('HLEN', KEYS[3]) == 0 then redis.call('PEXPIRE', KEYS[4], 86400000) end
  changed('["r",' .. s .. ',' .. cjson.encode(entity) .. ',' .. record .. ']')
  return {entity, record}
end
"""

# ARGV: entity, record JSON, sid, "1" when a taken entity (a Pushy member id of 8 hex
# digits) is drawn again, "1" when member webhooks are wanted. A sid already held is a
# replay: nothing changes. Returns {seq, 1 when the entity was added and member_added is to
# be announced (2: added, but back within its removal's hold), the entity}: the joining
# shard answers its member once its mirror reached seq.
JOIN = Script("join", _CHANGED + """
local held = redis.call('HGET', KEYS[5], ARGV[3])
if held then return {""" + _SEQ + """, 0, held} end
local entity = ARGV[1]
if ARGV[4] == '1' then
  local x = tonumber(entity, 16) or 0
  while redis.call('HEXISTS', KEYS[3], entity) == 1 do
    x = (x * 69069 + 1) % 4294967296
    entity = string.format('%08x', x)
  end
end
redis.call('HSET', KEYS[5], ARGV[3], entity)
if redis.call('HINCRBY', KEYS[3], entity, 1) > 1 then return {""" + _SEQ + """, 0, entity} end
local s = redis.call('INCR', KEYS[4])
redis.call('PERSIST', KEYS[4])
redis.call('HSET', KEYS[1], entity, ARGV[2])
redis.call('ZADD', KEYS[2], s, entity)
changed('["a",' .. s .. ',' .. cjson.encode(entity) .. ',' .. ARGV[2] .. ',' ..
  cjson.encode(ARGV[3]) .. ']')
if ARGV[5] == '1' and redis.call('HSETNX', KEYS[6], entity, '1') == 0 then
  return {s, 2, entity}
end
return {s, 1, entity}
""")

# ARGV: sid. Returns {seq, 1 when its entity left, the entity}.
LEAVE = Script("leave", _LEAVE + """
local gone = leave(ARGV[1])
if gone then return {""" + _SEQ + """, 1, gone[1]} end
return {""" + _SEQ + """, 0, ''}
""")

# ARGV: "1" to catch up (a restarted shard's replayed members), the instance. Returns {seq,
# the seq this instance's shard applied last (-1: none, or not asked), the number of log
# entries that follow, the log (oldest first), then entity, record, ... in join order}.
SNAPSHOT = Script("snapshot", """
local out = {""" + _SEQ + """, -1, 0}
if ARGV[1] == '1' then
  local at = redis.call('HGET', KEYS[8], ARGV[2])
  out[2] = tonumber(at or '-1')
  local log = redis.call('LRANGE', KEYS[7], 0, -1)
  out[3] = #log
  for _, message in ipairs(log) do out[#out + 1] = message end
end
local records = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do records[all[i]] = all[i + 1] end
for _, entity in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  out[#out + 1] = entity
  out[#out + 1] = records[entity] or '{}'
end
return out
""")

# ARGV: the sids of the instance (KEYS[5]) to keep; every other one leaves. Returns {seq,
# entity, record, ...} of the entities that left (a sweep, a restart's leftovers).
PRUNE = Script("prune", _LEAVE + """
local keep = {}
for _, sid in ipairs(ARGV) do keep[sid] = true end
local out = {0}
local held = redis.call('HKEYS', KEYS[5])
for _, sid in ipairs(held) do
  if not keep[sid] then
    local gone = leave(sid)
    if gone then out[#out + 1] = gone[1]; out[#out + 1] = gone[2] end
  end
end
out[1] = """ + _SEQ + """
return out
""")

# ARGV: entity. 1 when it is still gone and its member_added was announced: now its
# member_removed is.
GONE = Script("gone", """
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 and redis.call('HDEL', KEYS[6], ARGV[1]) == 1
then return 1 end
return 0
""")

SCRIPTS = (COUNT, VACANT, JOIN, LEAVE, SNAPSHOT, PRUNE, GONE)
PRESENCE = {script.name: script for script in (JOIN, LEAVE, SNAPSHOT, PRUNE, GONE)}
