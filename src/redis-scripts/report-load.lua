--[[
  A worker's report of its load, stamped with Redis's clock (every host's reports compare,
  whatever their clocks).

  KEYS[1] the load hash
  ARGV[1] the worker id
  ARGV[2] its report
  ARGV[3] the hash's life (ms)

  Returns: Redis's time (ms).
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ',' .. now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return now
