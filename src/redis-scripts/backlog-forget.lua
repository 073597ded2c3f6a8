--[[
  Drops an empty backlog from the index (a producer may have stored rows since it was read).

  KEYS[1] the batch's backlog
  KEYS[2] the backlogs' index
  ARGV[1] the batch name

  Returns: 1.
]]
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
