--[[
  Renews a producer's lease only while it is still its own, and keeps the run's keys alive (a
  day) with it.

  KEYS[1] the lease
  KEYS[2..] the run's keys that live as long as it does
  ARGV[1] the run (the lease's holder)
  ARGV[2] the lease's life (ms)

  Returns: 1 renewed, 0 the lease is another's (or gone).
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], 86400000) end
return 1
