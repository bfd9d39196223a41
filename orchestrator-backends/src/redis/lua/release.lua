-- release. ARGV: now, lease id, fencing token, success (1|0).
local now, lid, token, success = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rec = call('HGET', K_LEASES, lid)
if not rec then
  if call('EXISTS', K_CFG) == 0 then
    return { 'nopool' }
  end
  return { 'nolease' }
end
local tok, acq, _, tk, pid = lparse(rec)
if not tok then
  return { 'corrupt', 'lease ' .. lid }
end
if tok ~= token then
  return { 'stale', tok }
end
purge(now)
end_lease(lid, tk)
local held = tonumber(now) - tonumber(acq)
if held < 0 then
  held = 0
end
-- metrics: bucket `b:{minute % 60}` = `MINUTE COMPLETED FAILED LEASE_MS`, totals `tot`
local minute = math.floor(tonumber(now) / 60000)
local bk = 'b:' .. s(minute % 60)
local m = call('HMGET', K_METRICS, bk, 'tot')
local dc, df = 0, 1
if success == '1' then
  dc, df = 1, 0
end
local bm, bc, bf, bms = minute, 0, 0, 0
if m[1] then
  local om, oc, of, oms = string.match(m[1], '^(%S+) (%d+) (%d+) (%d+)$')
  if om and tonumber(om) >= minute then
    bm, bc, bf, bms = tonumber(om), tonumber(oc), tonumber(of), tonumber(oms)
  end
end
if bm == minute then
  call('HSET', K_METRICS, bk, s(bm) .. ' ' .. s(bc + dc) .. ' ' .. s(bf + df) .. ' ' .. s(bms + held),
    'tot', add_totals(m[2], dc, df, 0))
else
  -- a late report older than the slot's minute: totals only
  call('HSET', K_METRICS, 'tot', add_totals(m[2], dc, df, 0))
end
local wrec = call('HGET', K_WORKERS, pid)
local w = wrec and wparse(wrec)
if not w then
  return { 'corrupt', 'worker of lease ' .. lid }
end
local hlid, hrec = free_worker(pid, w, now)
return { 'ok', rec, s(held), wformat(w), hlid or false, hrec or false }
