--[[
  Extends a key's life only while it still holds the expected value: a lock is kept alive by its
  holder only. PEXPIRE needs no room, so Redis out of memory accepts it, where BullMQ's own lock
  renewal (a SET) is refused.

  KEYS[1] the lock
  ARGV[1] its holder (the value expected)
  ARGV[2] the new life (ms)

  Returns: 1 extended, 0 held by another (or gone).
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
