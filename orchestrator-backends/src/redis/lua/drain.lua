-- drain_worker. ARGV: processor id, now.
local pid, now = ARGV[1], ARGV[2]
if not load_state() then
  return { 'nopool' }
end
local w, err, wrec = wload(pid)
if not w then
  return err
end
if w.st ~= 'D' then
  if w.st == 'A' then
    call('LREM', K_AVAIL, 0, pid)
  end
  move(w, 'D')
  w.upd = now
  wrec = wformat(w)
  call('HSET', K_WORKERS, pid, wrec)
  flush('ls', now)
end
return { 'ok', wrec }
