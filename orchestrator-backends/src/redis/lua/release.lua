-- release. ARGV: now, lease id, fencing token, success (1|0).
local now, lid, token, success = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local nnow = tonumber(now)
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
-- metrics: bucket `b:{minute % 60}` (see common.lua), totals in `ctr`
local minute = math.floor(nnow / 60000)
local bk = string.format('b:%d', minute % 60)
if not load_state(bk) then
  return { 'nopool' }
end
purge(nnow)
end_lease(lid, tk)
local held = nnow - tonumber(acq)
if held < 0 then
  held = 0
end
local dc, df = 0, 1
if success == '1' then
  dc, df = 1, 0
end
local bm, bc, bf, bms = minute, 0, 0, 0
local slot = C[bk]
if slot then
  local om, oc, of, oms
  if #slot == 32 then
    om, oc, of, oms = struct.unpack(BUCKET, slot)
  else
    -- written as text before buckets were packed
    om, oc, of, oms = string.match(slot, '^(%S+) (%d+) (%d+) (%d+)$')
  end
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
  flush(bk, struct.pack(BUCKET, bm, bc + dc, bf + df, bms + held))
else
  -- a late report older than the slot's minute: totals only
  flush()
end
return { 'ok', rec, held, wformat(w), hlid or false, hrec or false }
