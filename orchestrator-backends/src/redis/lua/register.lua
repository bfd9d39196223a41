-- register_worker. ARGV: processor id, app-id, now.
local max = call('HGET', K_CFG, 'max')
if not max then
  return { 'nopool' }
end
local pid, app, now = ARGV[1], ARGV[2], ARGV[3]
local wrec = call('HGET', K_WORKERS, pid)
if wrec then
  local w = wparse(wrec)
  if w and w.app == app then
    return { 'ok', wrec }
  end
  return { 'conflict' }
end
if call('HEXISTS', K_APPIDS, app) == 1 then
  return { 'conflict' }
end
local p, a, l, d = load()
if p + a + l + d >= tonumber(max) then
  return { 'capacity', max }
end
wrec = 'P - ' .. now .. ' ' .. now .. ' ' .. now .. ' ' .. app
call('HSET', K_WORKERS, pid, wrec)
call('HSET', K_APPIDS, app, pid)
call('HINCRBY', K_COUNTS, 'P', 1)
call('HSET', K_METRICS, 'ls', now)
return { 'ok', wrec }
