--[[
  Drops a row's request state: any, or only this delivery's submitting mark.

  KEYS[1] the row's request
  ARGV[1] the mark to drop, or '' for any

  Returns: 1 dropped, 0 nothing (another's mark, or none).
]]
if ARGV[1] == '' or redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
