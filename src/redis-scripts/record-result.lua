--[[
  Ends a row, atomically: the first final result for a row key wins, counts move once, the ledger
  learns an answer once, and the row lets go of its claim (if it still holds it). At-least-once
  delivery can run a row twice; this keeps the second run from counting twice.
  The row's request state goes too: the row has ended. A stale job (the row's content changed
  since) pairs its answer with no row: it only goes to the ledger, under the content it answers.
  A batch Redis lost gets nothing written under its keys (nobody would read them); its answer
  still goes to the ledger, so enqueuing the manifest again does not pay for it. The same for a
  batch that expired or was pruned (its meta is gone but the row's job is still there: -3, not -2).
  The ledger is a key per answer, living the batch's retention (the default for a batch that is
  gone); an answer already there wins, and lives at least as long.
  Ending a row is a write to its batch: every key of the batch lives its retention again, from
  now; at least the unfinished floor while rows are still to end or a producer writes it.
  The batch's stats (figures `status` shows in O(1)) move with the counts, once per row: sums and
  latency histogram buckets (fields and increments computed by statsIncrements), the first and
  last finish, and a ring of RATE_SLOTS slots of RATE_SLOT_MS counting rows ended (the rate over
  the last minute; both as in results/batch-figures.ts, which a test checks); a slot is reset when
  it comes round again, and a finish older than the slot's current lap (a worker's clock far
  behind) is left out of the rate.
  The row leaves the batch's active rows.

  KEYS[1] the batch's results
  KEYS[2] the batch's counts
  KEYS[3] the ledger entry of the row's fingerprint
  KEYS[4] the fingerprint's claim (inflight)
  KEYS[5] the row's request
  KEYS[6] the batch's row keys
  KEYS[7] the batch's meta
  KEYS[8] the batch's stats
  KEYS[9] the batch's active rows
  KEYS[10] the row's BullMQ job
  KEYS[11..] the batch's retention tail (queue/retention.ts retentionTail)
  ARGV[1] the row key
  ARGV[2] the result (JSON)
  ARGV[3] its status
  ARGV[4] the fingerprint
  ARGV[5] the ledger entry, or ''
  ARGV[6] the owner (the job id), or ''
  ARGV[7] finished at (ms)
  ARGV[8] the batch name
  ARGV[9] the default retention
  ARGV[10] the unfinished floor (ms)
  ARGV[11..] the stats' field, increment pairs

  Returns: 1 recorded, 0 the row had a result, -1 stale, -2 Redis lost the batch, -3 the batch
  expired or was pruned.
]]
--- @include "includes/retention"
local RATE_SLOT_MS = 10000
local RATE_SLOTS = 8
local added = 0
local wanted = redis.call('HGET', KEYS[6], ARGV[1])
-- (Empty: the row key is its fingerprint, a row without an id: queue/keys.ts.)
if wanted == '' then wanted = ARGV[1] end
local retention = retentionOf(KEYS[7], ARGV[9])
if redis.call('EXISTS', KEYS[7]) == 0 then
  if ARGV[5] ~= '' then keepAnswer(KEYS[3], ARGV[5], retention) end
  if redis.call('EXISTS', KEYS[10]) == 1 then added = -3 else added = -2 end
elseif wanted and wanted ~= ARGV[4] then
  if ARGV[5] ~= '' then keepAnswer(KEYS[3], ARGV[5], retention) end
  added = -1
elseif redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if ARGV[5] ~= '' then keepAnswer(KEYS[3], ARGV[5], retention) end
  added = 1
  for i = 11, #ARGV - 1, 2 do redis.call('HINCRBY', KEYS[8], ARGV[i], ARGV[i + 1]) end
  local at = tonumber(ARGV[7])
  local first = tonumber(redis.call('HGET', KEYS[8], 'first_at') or '')
  if first == nil or at < first then redis.call('HSET', KEYS[8], 'first_at', ARGV[7]) end
  local last = tonumber(redis.call('HGET', KEYS[8], 'last_at') or '')
  if last == nil or at > last then redis.call('HSET', KEYS[8], 'last_at', ARGV[7]) end
  local slot = math.floor(at / RATE_SLOT_MS)
  local ring = slot % RATE_SLOTS
  local lap = tonumber(redis.call('HGET', KEYS[8], 'rt:' .. ring) or '')
  if lap == nil or lap < slot then
    redis.call('HSET', KEYS[8], 'rt:' .. ring, slot, 'r:' .. ring, 1)
  elseif lap == slot then
    redis.call('HINCRBY', KEYS[8], 'r:' .. ring, 1)
  end
end
if ARGV[6] ~= '' and redis.call('GET', KEYS[4]) == ARGV[6] then redis.call('DEL', KEYS[4]) end
if ARGV[6] ~= '' then
  redis.call('DEL', KEYS[5])
  redis.call('HDEL', KEYS[9], ARGV[6])
end
if added >= -1 then touchBatch(11, ARGV[8], retention, tonumber(ARGV[10]), batchOpen(11)) end
return added
