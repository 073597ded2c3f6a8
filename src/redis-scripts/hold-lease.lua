--[[
  Takes or keeps a lease.

  KEYS[1] the lease
  ARGV[1] the holder
  ARGV[2] its life (ms)

  Returns: 1 held by this holder now, 0 held by another.
]]
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
