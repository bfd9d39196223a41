-- status and metrics (read-only). ARGV: now, what (`status` | `metrics`).
local now, what = ARGV[1], ARGV[2]
local v = call('HMGET', K_STATE, 'json', 'ctr')
if not v[1] then
  return { 'nopool' }
end
local q = call('ZCOUNT', K_TDL, '(' .. now, '+inf')
local p, a, l, d, tok, seq, tc, tf, tr = 0, 0, 0, 0, 0, 0, 0, 0, 0
if v[2] and #v[2] >= 72 then
  -- the first nine doubles, with or without the hints after them
  p, a, l, d, tok, seq, tc, tf, tr = struct.unpack(CTR9, v[2])
end
local counts = { s(p), s(a), s(l), s(d), s(q) }
if what == 'metrics' then
  -- buckets as text (`MINUTE COMPLETED FAILED LEASE_MS`), `ls` as stored, totals decoded
  -- as `tot` = `COMPLETED FAILED RECLAIMED`
  local out = { 'tot', s(tc) .. ' ' .. s(tf) .. ' ' .. s(tr) }
  local all = call('HGETALL', K_STATE)
  for i = 1, #all, 2 do
    local f, val = all[i], all[i + 1]
    if f == 'ls' or string.sub(f, 1, 2) == 'b:' then
      if f ~= 'ls' and #val == 32 then
        val = string.format('%d %d %d %d', struct.unpack(BUCKET, val))
      end
      out[#out + 1] = f
      out[#out + 1] = val
    end
  end
  return { 'ok', counts, out }
end
return { 'ok', counts, v[1], call('HGETALL', K_WORKERS), call('HGETALL', K_LEASES) }
