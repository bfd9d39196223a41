-- reclaim_expired. ARGV: now.
local now = ARGV[1]
if not load_state() then
  return { 'nopool' }
end
purge(now)
local out = { 'ok' }
reclaim(now, out)
flush()
return out
