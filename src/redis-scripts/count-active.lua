--[[
  Counts a batch's rows calling fal now: its active rows whose BullMQ job is locked by a worker.
  An entry whose lock is gone belongs to a worker that died (its lock expired) or to a row that
  left without saying so: it is removed, here, atomically (a worker picking the row up again adds
  it back in begin-row, under a fresh lock). O(rows in flight), bounded by the workers' concurrency.
  The lock keys are built from ARGV, not given as KEYS: they share the queue's hash tag with the
  active rows (queue/keys.ts), so on a Redis Cluster they are in the same slot.

  KEYS[1] the batch's active rows
  ARGV[1] a job lock key's text before the job id
  ARGV[2] a job lock key's text after the job id

  Returns: the number of rows calling fal.
]]
local n = 0
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id .. ARGV[2]) == 1 then n = n + 1 else redis.call('HDEL', KEYS[1], id) end
end
return n
