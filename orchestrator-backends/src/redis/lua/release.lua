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
local bk = BUCKETS[minute % 60]
if not load_state(bk) then
  return { 'nopool' }
end
purge(nnow)
end_lease(lid, tk)
local held = nnow - tonumber(acq)
if held < 0 then
  held = 0
end
local bucket = count_release(minute, bk, held, success)
local wrec = call('HGET', K_WORKERS, pid)
local w = wrec and wparse(wrec)
if not w then
  return { 'corrupt', 'worker of lease ' .. lid }
end
local hlid, hrec = free_worker(pid, w, now)
if bucket then
  flush(bk, bucket)
else
  -- a late report older than the slot's minute: totals only
  flush()
end
return { 'ok', rec, held, wformat(w), hlid or false, hrec or false }
