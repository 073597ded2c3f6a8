--[[
  Writes the queue's in-flight cap (a lease), and BullMQ's global concurrency with it, in one
  script so no other write lands between. An auto cap does not replace a fixed one.

  KEYS[1] the cap hash
  KEYS[2] BullMQ's queue meta, whose `concurrency` field is its global concurrency (what
          Queue.setGlobalConcurrency writes)
  ARGV[1] '1' when it is an auto cap (then only if no fixed cap is held)
  ARGV[2] the cap's life (ms)
  ARGV[3] the cap
  ARGV[4..] the cap hash's field, value pairs

  Returns: 1 written, 0 a fixed cap is held.
]]
if ARGV[1] == '1' and redis.call('HGET', KEYS[1], 'mode') == 'fixed' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'concurrency', ARGV[3])
return 1
