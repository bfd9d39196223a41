-- remove_worker. ARGV: processor id, now.
local pid, now = ARGV[1], ARGV[2]
if call('EXISTS', K_CFG) == 0 then
  return { 'nopool' }
end
local wrec = call('HGET', K_WORKERS, pid)
if not wrec then
  return { 'noworker' }
end
local w = wparse(wrec)
if not w then
  return { 'corrupt', 'worker ' .. pid }
end
call('HDEL', K_WORKERS, pid)
call('HINCRBY', K_COUNTS, w.st, -1)
call('HDEL', K_APPIDS, w.app)
if w.st == 'A' then
  call('LREM', K_AVAIL, 0, pid)
end
local lrec = false
if w.lid ~= '-' then
  lrec = call('HGET', K_LEASES, w.lid)
  if lrec then
    local _, _, _, tk = lparse(lrec)
    end_lease(w.lid, tk)
  end
end
call('HSET', K_METRICS, 'ls', now)
return { 'ok', wrec, w.lid, lrec }
