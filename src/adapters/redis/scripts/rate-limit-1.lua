-- Fixed-window request counter for one API key, shared by every instance.
-- The window starts at the key's first request in it, so there is no clock-aligned
-- boundary at which a burst of twice the limit could pass.
--
-- KEYS[1]  the key's counter (string)
-- ARGV[1]  window length in milliseconds
-- Reply    { requests counted in this window including this one, milliseconds until it ends }
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { count, ttl }
