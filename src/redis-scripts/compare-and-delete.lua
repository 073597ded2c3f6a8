--[[
  Deletes a key only while it still holds the expected value: a lock, lease or claim is released
  by its holder only, never after another took it over.

  KEYS[1] the lock, lease or claim
  ARGV[1] its holder (the value expected)

  Returns: 1 deleted, 0 held by another (or gone).
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
