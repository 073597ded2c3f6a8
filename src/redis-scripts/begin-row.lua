--[[
  Starts a row, atomically: has it ended? was an identical row already paid for (the ledger keeps
  answers only)? else claim the right to call fal for this input, unless another row holds it.
  Then the row's own request: one saved by any delivery of this row is resumed; one being
  submitted right now by another delivery (a worker that lost its lock while alive) is waited
  for; otherwise this delivery marks the row as submitting, before it calls fal.
  One round trip, and no gap in which a twin's answer or another delivery's submit could slip by.
  A job whose content is no longer the row's (the row was edited and enqueued again) is stale.
  A batch whose meta is gone while its row's job still exists expired (its retention ran out) or
  was pruned: the row is dropped (its saved request and its claim with it). With the job gone
  too, Redis lost the batch (flushed, or restarted without persistence).
  A row beginning is a write to its batch: every key of the batch lives its retention again (at
  least the unfinished floor: the row has not ended), lazily (see touchBatch). The ledger is a key
  per answer; one found only in the ledger hash of earlier versions moves to its own key. A reused
  answer lives at least this batch's retention from now.
  A row that goes on to call fal (or to resume its request) joins the batch's active rows.
  Gated (ARGV[12] = 1): a batch paused, cancelled or under a spend cap is not begun; what the
  worker needs to decide (the control fields, the spend so far, the row's request) comes back
  instead, in the same round trip, changing nothing. A plain running batch, the common case, begins.

  KEYS[1] the batch's results
  KEYS[2] the ledger entry of the row's fingerprint
  KEYS[3] the fingerprint's claim (inflight)
  KEYS[4] the row's request
  KEYS[5] the batch's row keys
  KEYS[6] the batch's meta
  KEYS[7] the batch's active rows
  KEYS[8] the legacy ledger hash
  KEYS[9] the row's BullMQ job
  KEYS[10] the batch's stats
  KEYS[11..] the batch's retention tail (queue/retention.ts retentionTail)
  ARGV[1] the row key
  ARGV[2] its fingerprint
  ARGV[3] the owner (the job id)
  ARGV[4] the claim's life (ms)
  ARGV[5] resume: '1' when the job's data carries a request, else '0'
  ARGV[6] this delivery's submitting mark
  ARGV[7] the mark's life (ms)
  ARGV[8] now (ms)
  ARGV[9] the batch name
  ARGV[10] the default retention
  ARGV[11] the unfinished floor (ms)
  ARGV[12] gated: '1' or '0'
  ARGV[13..] the control fields to read

  Returns: {'lost'}, {'gone'}, {'control', request, billed, inference_ms, control fields...},
  {'stale'}, {'ended'}, {'ledger', entry}, {'held', owner}, {'resume', request}, {'claimed'} or
  {'submitting', mark}.
]]
--- @include "includes/retention"
if redis.call('EXISTS', KEYS[6]) == 0 then
  if redis.call('EXISTS', KEYS[9]) == 0 then return {'lost'} end
  -- Nobody will read this row's request or claim again.
  redis.call('DEL', KEYS[4])
  if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
  return {'gone'}
end
if ARGV[12] == '1' then
  local control = redis.call('HMGET', KEYS[6], 'ctl_state', 'max_spend')
  if control[1] == 'paused' or control[1] == 'cancelled' or control[2] then
    local spend = redis.call('HMGET', KEYS[10], 'billed', 'inference_ms')
    return {'control', redis.call('GET', KEYS[4]), spend[1], spend[2], unpack(redis.call('HMGET', KEYS[6], unpack(ARGV, 13)))}
  end
end
local retention = retentionOf(KEYS[6], ARGV[10])
touchBatch(11, ARGV[9], retention, tonumber(ARGV[11]), true, true)
local wanted = redis.call('HGET', KEYS[5], ARGV[1])
-- (Empty: the row key is its fingerprint, a row without an id: queue/keys.ts.)
if wanted == '' then wanted = ARGV[1] end
if wanted and wanted ~= ARGV[2] then return {'stale'} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'ended'} end
local paid = redis.call('GET', KEYS[2])
if not paid then
  paid = redis.call('HGET', KEYS[8], ARGV[2])
  if paid and cjson.decode(paid)['status'] == 'ok' then
    keepAnswer(KEYS[2], paid, retention)
    redis.call('HDEL', KEYS[8], ARGV[2])
  end
end
if paid and cjson.decode(paid)['status'] == 'ok' then
  extendAnswer(KEYS[2], retention)
  return {'ledger', paid}
end
local request = redis.call('GET', KEYS[4])
local saved = request and string.sub(request, 1, 4) == 'rid:'
local current = redis.call('GET', KEYS[3])
if not (ARGV[5] == '1' or saved or current == false or current == ARGV[3]) then return {'held', current} end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[7], ARGV[3], ARGV[8])
liveAsMeta(KEYS[7], KEYS[6])
if saved then return {'resume', request} end
if ARGV[5] == '1' then return {'claimed'} end
if request and request ~= ARGV[6] then return {'submitting', request} end
redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[7])
return {'claimed'}
