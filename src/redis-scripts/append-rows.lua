--[[
  Appends a chunk to a producer's draft rows list only where it belongs: a resend after a
  reconnect (whose first try had landed) finds the list already longer and adds nothing, so no
  row is listed twice. The list lives a day from each append.

  KEYS[1] the draft rows list
  ARGV[1] the list's length (elements) the chunk goes after
  ARGV[2..] the chunk's elements (a packed chunk of row entries: queue/batch-rows.ts)

  Returns: the list's length now.
]]
if redis.call('LLEN', KEYS[1]) == tonumber(ARGV[1]) then
  redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
end
redis.call('PEXPIRE', KEYS[1], 86400000)
return redis.call('LLEN', KEYS[1])
