--[[
  Trims what a top-up turned into jobs off the head of a backlog, if nobody did meanwhile; a
  batch that is gone (expired, pruned, lost) loses its backlog.

  KEYS[1] the batch's backlog
  KEYS[2] the batch's meta
  KEYS[3] the backlogs' index
  ARGV[1] the meta's backlog_taken counter, as read
  ARGV[2] the number of entries taken
  ARGV[3] the batch name

  Returns: 1 trimmed, 0 another top-up did, -1 the batch is gone.
]]
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[3])
  return -1
end
if (redis.call('HGET', KEYS[2], 'backlog_taken') or '0') ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('HINCRBY', KEYS[2], 'backlog_taken', ARGV[2])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[3], ARGV[3]) end
return 1
