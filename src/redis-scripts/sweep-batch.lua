--[[
  One name of the batches list or the expiries zset whose time has come, or that has no expiry:
  - its meta is gone: it expired (or was pruned or lost): off both lists, strays deleted;
  - a batch from before retention (no retention_ms, no TTL): it gets the default from now;
  - else its expiry is written down again from the meta's TTL (it was renewed meanwhile).

  KEYS[1..] the batch's retention tail (queue/retention.ts retentionTail): KEYS[4] its meta
  ARGV[1] the batch name
  ARGV[2] the default retention
  ARGV[3] the unfinished floor (ms)

  Returns: 'expired', 'migrated' or 'kept'.
]]
--- @include "includes/retention"
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
  return 'expired'
end
local left = redis.call('PTTL', KEYS[4])
if left == -1 and not redis.call('HGET', KEYS[4], 'retention_ms') then
  touchBatch(1, ARGV[1], retentionOf(KEYS[4], ARGV[2]), tonumber(ARGV[3]), batchOpen(1))
  return 'migrated'
end
if left < 0 then redis.call('ZADD', KEYS[2], '+inf', ARGV[1]) else redis.call('ZADD', KEYS[2], falbatchNow() + left, ARGV[1]) end
redis.call('ZADD', KEYS[1], 'NX', redis.call('HGET', KEYS[4], 'created_at') or falbatchNow(), ARGV[1])
return 'kept'
