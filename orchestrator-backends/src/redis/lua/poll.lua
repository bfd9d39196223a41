-- poll_wait. ARGV: ticket id, now.
local tk, now = ARGV[1], ARGV[2]
if call('EXISTS', K_STATE) == 0 then
  return { 'noticket' }
end
purge(now)
local trec = call('HGET', K_TICKETS, tk)
if not trec then
  return { 'noticket' }
end
local lid = string.match(trec, '^G (%S+)$')
if not lid then
  return { 'waiting' }
end
call('HDEL', K_TICKETS, tk)
call('DEL', grant_key(tk))
local rec = call('HGET', K_LEASES, lid)
if not rec then
  return { 'noticket' }
end
return { 'leased', lid, rec }
