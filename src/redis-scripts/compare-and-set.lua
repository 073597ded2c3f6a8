--[[
  Takes a lock or mark over from a holder that is gone, unless it changed meanwhile (another took
  it over first).

  KEYS[1] the lock or mark
  ARGV[1] the holder seen
  ARGV[2] the new holder
  ARGV[3] its life (ms)

  Returns: 1 taken over, 0 it changed.
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
