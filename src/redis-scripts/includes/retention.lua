--[[
  Functions shared by every script that writes to a batch or the ledger (included with
  `--- @include "includes/retention"`). `t` is the index in KEYS where the retention tail starts
  (queue/retention.ts retentionTail): KEYS[t] batches, t+1 expiries, t+2 the producer lease,
  t+3 meta, t+4 row keys, t+5 counts, then the batch's other data keys to the end of KEYS.
]]
local function falbatchNow()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
-- The batch's retention (ms), nil for ever; a batch from before retention (or gone) has the default.
local function retentionOf(meta, default)
  local stored = redis.call('HGET', meta, 'retention_ms') or default
  if stored == 'forever' then return nil end
  return tonumber(stored)
end
-- Rows of the batch not ended yet.
local function batchPending(t)
  local ended = (tonumber(redis.call('HGET', KEYS[t + 5], 'ok')) or 0) + (tonumber(redis.call('HGET', KEYS[t + 5], 'failed')) or 0)
  return redis.call('HLEN', KEYS[t + 4]) > ended
end
-- Rows not ended yet, or a producer writing it.
local function batchOpen(t)
  return redis.call('EXISTS', KEYS[t + 2]) == 1 or batchPending(t)
end
-- Every data key of the batch lives its retention from now (at least floor while it is open),
-- and the expiries zset says when; the batch is on the batches list. Lazy (a row beginning, which
-- creates no key but 'active', given its meta's life by liveAsMeta): nothing to do while the meta
-- still has 99 % of that life left; the expiries zset then runs up to 1 % early, which sweeps
-- correct (a sweep re-reads the meta's TTL before it drops a name).
local function touchBatch(t, name, retention, floor, open, lazy)
  local ttl = retention
  if ttl and open and ttl < floor then ttl = floor end
  if lazy then
    local left = redis.call('PTTL', KEYS[t + 3])
    if (ttl == nil and left == -1) or (ttl and left >= ttl - math.floor(ttl / 100)) then return end
  end
  for i = t + 3, #KEYS do
    if ttl then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
  end
  local now = falbatchNow()
  if ttl then redis.call('ZADD', KEYS[t + 1], now + ttl, name) else redis.call('ZADD', KEYS[t + 1], '+inf', name) end
  redis.call('ZADD', KEYS[t], 'NX', redis.call('HGET', KEYS[t + 3], 'created_at') or now, name)
end
-- A key created after the batch's touch in the same script lives as long as its meta.
local function liveAsMeta(key, meta)
  local left = redis.call('PTTL', meta)
  if left > 0 then redis.call('PEXPIRE', key, left) end
end
-- A paid answer lives at least ttl more (nil: for ever); never shortened.
local function extendAnswer(key, ttl)
  if ttl then redis.call('PEXPIRE', key, ttl, 'GT') else redis.call('PERSIST', key) end
end
-- The first answer for a fingerprint wins; a later one only extends it.
local function keepAnswer(key, entry, ttl)
  local set
  if ttl then set = redis.call('SET', key, entry, 'NX', 'PX', ttl) else set = redis.call('SET', key, entry, 'NX') end
  if not set then extendAnswer(key, ttl) end
end
