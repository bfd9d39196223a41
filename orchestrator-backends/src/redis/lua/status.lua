-- status and metrics (read-only). ARGV: now, what (`status` | `metrics`).
local now, what = ARGV[1], ARGV[2]
local v = call('HMGET', K_STATE, 'json', 'ctr')
if not v[1] then
  return { 'nopool' }
end
local q = call('ZCOUNT', K_TDL, '(' .. now, '+inf')
local p, a, l, d, tok, seq, tc, tf, tr = 0, 0, 0, 0, 0, 0, 0, 0, 0
if v[2] and #v[2] == 72 then
  p, a, l, d, tok, seq, tc, tf, tr = struct.unpack(CTR, v[2])
end
local counts = { s(p), s(a), s(l), s(d), s(q) }
if what == 'metrics' then
  -- buckets and `ls` as stored, totals decoded as `tot` = `COMPLETED FAILED RECLAIMED`
  local out = { 'tot', s(tc) .. ' ' .. s(tf) .. ' ' .. s(tr) }
  local all = call('HGETALL', K_STATE)
  for i = 1, #all, 2 do
    local f = all[i]
    if f == 'ls' or string.sub(f, 1, 2) == 'b:' then
      out[#out + 1] = f
      out[#out + 1] = all[i + 1]
    end
  end
  return { 'ok', counts, out }
end
return { 'ok', counts, v[1], call('HGETALL', K_WORKERS), call('HGETALL', K_LEASES) }
