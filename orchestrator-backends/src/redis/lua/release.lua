-- release. ARGV: now, lease id, fencing token, success (1|0).
local now, lid, token, success = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rec = call('HGET', K_LEASES, lid)
if not rec then
  if call('EXISTS', K_STATE) == 0 then
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
-- metrics: bucket `b:{minute % 60}` = `MINUTE COMPLETED FAILED LEASE_MS`, totals in `ctr`
local minute = math.floor(tonumber(now) / 60000)
local bk = 'b:' .. s(minute % 60)
if not load_state(bk) then
  return { 'nopool' }
end
purge(now)
end_lease(lid, tk)
local held = tonumber(now) - tonumber(acq)
if held < 0 then
  held = 0
end
local dc, df = 0, 1
if success == '1' then
  dc, df = 1, 0
end
local bm, bc, bf, bms = minute, 0, 0, 0
if C[bk] then
  local om, oc, of, oms = string.match(C[bk], '^(%S+) (%d+) (%d+) (%d+)$')
  if om and tonumber(om) >= minute then
    bm, bc, bf, bms = tonumber(om), tonumber(oc), tonumber(of), tonumber(oms)
  end
end
C.tc, C.tf = C.tc + dc, C.tf + df
dirty = true
local wrec = call('HGET', K_WORKERS, pid)
local w = wrec and wparse(wrec)
if not w then
  return { 'corrupt', 'worker of lease ' .. lid }
end
local hlid, hrec = free_worker(pid, w, now)
if bm == minute then
  flush(bk, s(bm) .. ' ' .. s(bc + dc) .. ' ' .. s(bf + df) .. ' ' .. s(bms + held))
else
  -- a late report older than the slot's minute: totals only
  flush()
end
return { 'ok', rec, s(held), wformat(w), hlid or false, hrec or false }
