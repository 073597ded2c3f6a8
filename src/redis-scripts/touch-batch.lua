--[[
  Renews a batch after writes to it. A batch whose meta is gone (pruned, lost, expired) gets
  nothing: what the writer just put under its keys is removed.

  KEYS[1..] the batch's retention tail (queue/retention.ts retentionTail): KEYS[4] its meta
  ARGV[1] the batch name
  ARGV[2] the default retention
  ARGV[3] the unfinished floor (ms)
  ARGV[4] whether the batch is open: 'open' (yes), 'auto' (rows pending or a producer writing),
          'rows' (rows pending; the caller is the producer, about to go)

  Returns: 1 renewed, 0 the batch is gone.
]]
--- @include "includes/retention"
if redis.call('EXISTS', KEYS[4]) == 0 then
  for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
  return 0
end
local open = ARGV[4] == 'open' or (ARGV[4] == 'auto' and batchOpen(1)) or (ARGV[4] == 'rows' and batchPending(1))
touchBatch(1, ARGV[1], retentionOf(KEYS[4], ARGV[2]), tonumber(ARGV[3]), open)
return 1
