-- cancel_wait. ARGV: ticket id.
local tk = ARGV[1]
local trec = call('HGET', K_TICKETS, tk)
if not trec then
  return { 'none' }
end
call('HDEL', K_TICKETS, tk)
local lid = string.match(trec, '^G (%S+)$')
if not lid then
  local _, seq = tparse(trec)
  if seq then
    call('ZREM', K_QUEUE, qmember(seq, tk))
  end
  call('ZREM', K_TDL, tk)
  return { 'none' }
end
call('DEL', grant_key(tk))
local rec = call('HGET', K_LEASES, lid)
if not rec then
  return { 'none' }
end
return { 'leased', lid, rec }
