-- acquire. ARGV: now, new lease (or ticket) id, lease ms (0 = default), wait ms, priority,
-- request JSON.
local now, lid, dur, wait, prio, req = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if call('EXISTS', K_CFG) == 0 then
  return { 'nopool' }
end
purge(now)
reclaim(now, nil)
while true do
  local pid = call('RPOP', K_AVAIL)
  if not pid then
    break
  end
  local wrec = call('HGET', K_WORKERS, pid)
  local w = wrec and wparse(wrec)
  if w and w.st == 'A' then
    local _, rec = grant(pid, w, lid, req, dur, nil, now)
    local p, a, l, d, q = load()
    return { 'leased', p, a, l, d, q, rec }
  end
end
if wait ~= '0' then
  local seq = call('INCR', K_SEQ)
  local deadline = s(tonumber(now) + tonumber(wait))
  call('HSET', K_TICKETS, lid, 'W ' .. deadline .. ' ' .. s(seq) .. ' ' .. dur .. ' ' .. prio .. ' ' .. req)
  call('ZADD', K_QUEUE, -tonumber(prio), qmember(seq, lid))
  call('ZADD', K_TDL, deadline, lid)
  local p, a, l, d, q = load()
  return { 'queued', p, a, l, d, q }
end
local p, a, l, d, q = load()
return { 'exhausted', p, a, l, d, q }
