--[[
  Forgets a row's failed result, so its job may run again (falbatch retry): only a failed one,
  counted once.

  KEYS[1] the batch's results
  KEYS[2] the batch's counts
  ARGV[1] the row key

  Returns: 1 forgotten, 0 no result, -1 the result is not a failure.
]]
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return 0 end
if cjson.decode(stored)['status'] ~= 'failed' then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'failed', -1)
return 1
