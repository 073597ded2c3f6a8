--[[
  Moves answers of the pre-retention ledger hash to their own keys (the default retention).

  KEYS[1] the ledger hash
  KEYS[2..] the answers' keys
  ARGV[1] the default retention (ms or 'forever')
  ARGV[2..] the answers' fingerprints (ARGV[i] goes to KEYS[i])

  Returns: the number of answers moved.
]]
local moved = 0
for i = 2, #KEYS do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry then
    if ARGV[1] == 'forever' then redis.call('SET', KEYS[i], entry, 'NX') else redis.call('SET', KEYS[i], entry, 'NX', 'PX', ARGV[1]) end
    redis.call('HDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
