-- reclaim_expired. ARGV: now.
local now = ARGV[1]
if call('EXISTS', K_CFG) == 0 then
  return { 'nopool' }
end
purge(now)
local out = { 'ok' }
reclaim(now, out)
return out
