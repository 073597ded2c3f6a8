--[[
  Stores a packed chunk of rows to call in a batch's backlog, counts them, and lists the batch
  among the backlogs; nothing when the batch is gone (pruned, expired, lost while its producer
  ran): its meta is not made again, so the producer learns it is gone (queue/retention.ts).

  KEYS[1] the batch's backlog
  KEYS[2] the batch's meta
  KEYS[3] the backlogs' index
  ARGV[1] the chunk (packed entries: queue/packed-entries.ts)
  ARGV[2] the number of rows it holds
  ARGV[3] the batch's place in the index, if it is not there yet
  ARGV[4] the batch name

  Returns: 1 stored, 0 the batch is gone.
]]
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'backlog_left', ARGV[2])
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[4])
return 1
