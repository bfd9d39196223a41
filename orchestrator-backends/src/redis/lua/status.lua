-- status and metrics (read-only). ARGV: now, what (`status` | `metrics`).
local now, what = ARGV[1], ARGV[2]
local cfg = call('HGET', K_CFG, 'json')
if not cfg then
  return { 'nopool' }
end
local c = call('HMGET', K_COUNTS, 'P', 'A', 'L', 'D')
local q = call('ZCOUNT', K_TDL, '(' .. now, '+inf')
local counts = { c[1] or '0', c[2] or '0', c[3] or '0', c[4] or '0', s(q) }
if what == 'metrics' then
  return { 'ok', counts, call('HGETALL', K_METRICS) }
end
return { 'ok', counts, cfg, call('HGETALL', K_WORKERS), call('HGETALL', K_LEASES) }
