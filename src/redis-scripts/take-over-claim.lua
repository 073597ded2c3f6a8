--[[
  Takes a claim over from an owner that is gone (or keeps it, for a claim that lapsed meanwhile),
  unless someone else did first.

  KEYS[1] the fingerprint's claim (inflight)
  ARGV[1] the owner that is gone
  ARGV[2] the new owner
  ARGV[3] the claim's life (ms)

  Returns: 1 taken over, 0 another holds it.
]]
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
