-- renew. ARGV: now, lease id, fencing token, extend ms.
local now, lid, token, ext = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rec = call('HGET', K_LEASES, lid)
if not rec then
  if call('EXISTS', K_STATE) == 0 then
    return { 'nopool' }
  end
  return { 'nolease' }
end
local tok, acq, exp, rest = string.match(rec, '^(%d+) (%S+) (%S+) (.*)$')
if not tok then
  return { 'corrupt', 'lease ' .. lid }
end
if tok ~= token then
  return { 'stale', tok }
end
if tonumber(exp) < tonumber(now) then
  return { 'expired', exp }
end
-- a draining worker's lease is not extended (it ends at its expiry, the drain deadline)
local _, _, _, _, pid = lparse(rec)
local w = pid and wload(pid)
if w and w.st == 'D' then
  return { 'draining', exp }
end
local nexp = s(tonumber(exp) + tonumber(ext))
rec = tok .. ' ' .. acq .. ' ' .. nexp .. ' ' .. rest
call('HSET', K_LEASES, lid, rec)
call('ZADD', K_EXP, nexp, lid)
return { 'ok', rec }
