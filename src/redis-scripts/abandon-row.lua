--[[
  A row stops calling fal without an answer: it leaves the active rows; its request state goes
  (any, or only this delivery's mark), and its claim (if still its own).

  KEYS[1] the batch's active rows
  KEYS[2] the row's request
  KEYS[3] the fingerprint's claim (inflight)
  ARGV[1] the owner (the job id)
  ARGV[2] drop the request: '' (no), 'any', or 'mark' (only if it is ARGV[3])
  ARGV[3] this delivery's submitting mark
  ARGV[4] release the claim: '1' or '0'

  Returns: 1.
]]
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] == 'any' or (ARGV[2] == 'mark' and redis.call('GET', KEYS[2]) == ARGV[3]) then redis.call('DEL', KEYS[2]) end
if ARGV[4] == '1' and redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
