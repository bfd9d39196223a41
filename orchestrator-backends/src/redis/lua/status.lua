-- status and metrics (read-only). ARGV: now, what (`status` | `metrics`).
local now, what = ARGV[1], ARGV[2]
local v = call('HMGET', K_STATE, 'json', 'ctr')
if not v[1] then
  return { 'nopool' }
end
local q = call('ZCOUNT', K_TDL, '(' .. now, '+inf')
local p, a, l, d = '0', '0', '0', '0'
if v[2] then
  p, a, l, d = string.match(v[2], '^(%S+) (%S+) (%S+) (%S+)')
end
local counts = { p or '0', a or '0', l or '0', d or '0', s(q) }
if what == 'metrics' then
  return { 'ok', counts, call('HGETALL', K_STATE) }
end
return { 'ok', counts, v[1], call('HGETALL', K_WORKERS), call('HGETALL', K_LEASES) }
