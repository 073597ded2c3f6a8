--[[
  Moves a backlog past the rows a top-up turned into jobs, if nobody did meanwhile: the head
  element's offset advances, or the element goes once all its rows are jobs. A batch that is
  gone (expired, pruned, lost) loses its backlog.

  KEYS[1] the batch's backlog
  KEYS[2] the batch's meta
  KEYS[3] the backlogs' index
  ARGV[1] the meta's backlog_taken counter, as read
  ARGV[2] the number of rows taken (from the head element, from its backlog_head on)
  ARGV[3] the number of rows the head element holds
  ARGV[4] the batch name

  Returns: 1 moved on, 0 another top-up did, -1 the batch is gone.
]]
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[4])
  return -1
end
if (redis.call('HGET', KEYS[2], 'backlog_taken') or '0') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
local head = tonumber(redis.call('HGET', KEYS[2], 'backlog_head') or '0') + n
if head >= tonumber(ARGV[3]) then
  redis.call('LPOP', KEYS[1])
  redis.call('HDEL', KEYS[2], 'backlog_head')
else
  redis.call('HSET', KEYS[2], 'backlog_head', head)
end
redis.call('HINCRBY', KEYS[2], 'backlog_taken', n)
if redis.call('HEXISTS', KEYS[2], 'backlog_left') == 1 then redis.call('HINCRBY', KEYS[2], 'backlog_left', -n) end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[4])
  redis.call('HDEL', KEYS[2], 'backlog_left')
end
return 1
