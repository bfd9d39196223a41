-- acquire. ARGV: now, new lease (or ticket) id, lease ms (0 = default), wait ms, priority,
-- request JSON.
local now, lid, dur, wait, prio, req = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
-- `now` as text goes into records; as a number (converted once: tonumber is a strtod)
-- into the comparisons
local nnow = tonumber(now)
if not load_state() then
  return { 'nopool' }
end
purge(nnow)
reclaim(nnow, nil)
while true do
  local pid = call('RPOP', K_AVAIL)
  if not pid then
    break
  end
  local wrec = call('HGET', K_WORKERS, pid)
  local w = wrec and wparse(wrec)
  if w and w.st == 'A' then
    local _, rec = grant(pid, w, lid, req, dur, nil, now)
    flush()
    -- A worker was Available, so nobody was queued (freed workers go to waiters first).
    return { 'leased', C.P, C.A, C.L, C.D, 0, rec }
  end
end
if wait ~= '0' then
  C.seq = C.seq + 1
  dirty = true
  local dl = nnow + tonumber(wait)
  local deadline = s(dl)
  if dl < C.qh then
    C.qh = dl
  end
  call('HSET', K_TICKETS, lid, 'W ' .. deadline .. ' ' .. s(C.seq) .. ' ' .. dur .. ' ' .. prio .. ' ' .. req)
  call('ZADD', K_QUEUE, -tonumber(prio), qmember(C.seq, lid))
  call('ZADD', K_TDL, deadline, lid)
  flush()
  return { 'queued', C.P, C.A, C.L, C.D, call('ZCARD', K_QUEUE) }
end
flush()
return { 'exhausted', C.P, C.A, C.L, C.D, call('ZCARD', K_QUEUE) }
