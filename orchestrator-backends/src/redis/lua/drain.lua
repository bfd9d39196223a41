-- drain_worker. ARGV: processor id, now, deadline ms (empty: none).
local pid, now, dl = ARGV[1], ARGV[2], ARGV[3]
if not load_state() then
  return { 'nopool' }
end
local w, err, wrec = wload(pid)
if not w then
  return err
end
local changed = false
if w.st ~= 'D' then
  if w.st == 'A' then
    call('LREM', K_AVAIL, 0, pid)
  end
  move(w, 'D')
  w.upd = now
  wrec = wformat(w)
  call('HSET', K_WORKERS, pid, wrec)
  changed = true
end
-- a lease that would outlive the deadline now ends at it
if dl and dl ~= '' and w.lid ~= '-' then
  local rec = call('HGET', K_LEASES, w.lid)
  local tok, acq, exp, rest
  if rec then
    tok, acq, exp, rest = string.match(rec, '^(%d+) (%S+) (%S+) (.*)$')
  end
  if tok and tonumber(exp) > tonumber(dl) then
    call('HSET', K_LEASES, w.lid, tok .. ' ' .. acq .. ' ' .. dl .. ' ' .. rest)
    call('ZADD', K_EXP, dl, w.lid)
    if tonumber(dl) < C.xh then
      C.xh = tonumber(dl)
    end
    dirty = true
  end
end
if changed then
  flush('ls', now)
else
  flush()
end
return { 'ok', wrec }
