-- register_worker. ARGV: processor id, app-id, now.
if not load_state('max') then
  return { 'nopool' }
end
local pid, app, now = ARGV[1], ARGV[2], ARGV[3]
local wrec = call('HGET', K_WORKERS, pid)
local field = appid_field(app)
if wrec then
  local w = wparse(wrec)
  if w and appid_field(w.app) == field then
    return { 'ok', wrec }
  end
  return { 'conflict' }
end
if call('HEXISTS', K_APPIDS, field) == 1 or call('HEXISTS', K_APPIDS, app) == 1 then
  return { 'conflict' }
end
if C.P + C.A + C.L + C.D >= (tonumber(C.max) or 0) then
  return { 'capacity', C.max }
end
wrec = 'P - ' .. now .. ' ' .. now .. ' ' .. now .. ' ' .. app
call('HSET', K_WORKERS, pid, wrec)
call('HSET', K_APPIDS, field, pid)
C.P = C.P + 1
dirty = true
flush('ls', now)
return { 'ok', wrec }
