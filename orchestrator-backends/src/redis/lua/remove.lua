-- remove_worker. ARGV: processor id, now.
local pid, now = ARGV[1], ARGV[2]
if not load_state() then
  return { 'nopool' }
end
local w, err, wrec = wload(pid)
if not w then
  return err
end
call('HDEL', K_WORKERS, pid)
C[w.st] = (C[w.st] or 0) - 1
dirty = true
call('HDEL', K_APPIDS, appid_field(w.app), w.app)
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
flush('ls', now)
return { 'ok', wrec, w.lid, lrec }
