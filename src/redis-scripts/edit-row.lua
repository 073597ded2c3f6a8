--[[
  Points a row key at its new content, and drops the answer to its old content (counts follow).

  KEYS[1] the batch's row keys
  KEYS[2] the batch's results
  KEYS[3] the batch's counts
  ARGV[1] the row key
  ARGV[2] its new fingerprint

  Returns: 1.
]]
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[3], cjson.decode(old)['status'], -1)
end
return 1
