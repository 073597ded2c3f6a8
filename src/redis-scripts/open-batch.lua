--[[
  Creates or reopens a batch for a producer: its name and creation time (kept), its retention
  (the given one, or the one it has, or the default), and every data key renewed (open: the floor).

  KEYS[1..] the batch's retention tail (queue/retention.ts retentionTail): KEYS[4] its meta
  ARGV[1] the batch name
  ARGV[2] created at (ms)
  ARGV[3] the retention (ms or 'forever'), or '' to keep the batch's own
  ARGV[4] the default retention
  ARGV[5] the unfinished floor (ms)

  Returns: the batch's retention_ms, as stored.
]]
--- @include "includes/retention"
redis.call('HSETNX', KEYS[4], 'name', ARGV[1])
redis.call('HSETNX', KEYS[4], 'created_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], 'retention_ms', ARGV[3]) else redis.call('HSETNX', KEYS[4], 'retention_ms', ARGV[4]) end
touchBatch(1, ARGV[1], retentionOf(KEYS[4], ARGV[4]), tonumber(ARGV[5]), true)
return redis.call('HGET', KEYS[4], 'retention_ms')
