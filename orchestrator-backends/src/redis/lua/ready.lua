-- mark_ready. ARGV: processor id or app-id, now.
if not load_state() then
  return { 'nopool' }
end
local key, now = ARGV[1], ARGV[2]
local pid = key
local wrec = call('HGET', K_WORKERS, pid)
if not wrec then
  pid = call('HGET', K_APPIDS, appid_field(key)) or call('HGET', K_APPIDS, key)
  wrec = pid and call('HGET', K_WORKERS, pid)
end
if not wrec then
  return { 'noworker' }
end
local w = wparse(wrec)
if not w then
  return { 'corrupt', 'worker ' .. pid }
end
if w.st == 'P' then
  purge(now)
  free_worker(pid, w, now)
  flush()
end
return { 'ok', pid, wformat(w) }
