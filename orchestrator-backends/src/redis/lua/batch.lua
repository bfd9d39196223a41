-- batch (library only): several operations of the pool KEYS[1] in one call, in order.
-- ARGV: per operation its name and then its arguments (ARITY of them). Reply: one flat
-- array, per operation the length of its reply and then the reply's elements: what the
-- operation alone would have returned, or `error, message` when it raised one (the
-- others still run, as separate calls would). The state is read once and written once
-- (see `begin_batch`).
--
-- Consecutive acquires, or consecutive releases, run as one *run*: the records all of
-- them need are read with one command and their changes written with one command per key
-- (`RPOP avail n`, one `HMGET`, one `HSET`, ...), instead of five or six commands per
-- operation; each `redis.call` costs far more than the Lua around it. A run covers only
-- the common case, in which the operations cannot see each other's writes: nobody waits,
-- no lease has expired, no record is missing or refused. At the first operation outside
-- it, the run stops and that operation runs alone (`OPS`), exactly as it would have.
local ARITY = { acquire = 6, release = 4, renew = 4 }

local function error_text(e)
  if type(e) == 'table' then
    return e.err or '?'
  end
  return tostring(e)
end

-- Appends reply `r` to the flat `out` at `o`; returns the new end.
local function put(out, o, r)
  local m = #r
  out[o + 1] = m
  for j = 1, m do
    out[o + 1 + j] = r[j]
  end
  return o + 1 + m
end

-- Acquires of ARGV[at..] (`count` of them, arity 6) as one run. Appends their replies to
-- `out` from `o`; returns how many ran and the new end of `out`.
local function acquire_run(A, at, count, out, o)
  if not load_state() or C.qh ~= NONE then
    return 0, o
  end
  local pids = call('RPOP', K_AVAIL, count)
  if not pids then
    return 0, o
  end
  local wrecs = call('HMGET', K_WORKERS, unpack(pids))
  local leases, exps, workers = {}, {}, {}
  local used = {}
  local done, p, np, n2 = 0, 1, #pids, 0
  while done < count do
    local a = at + done * 7
    local now, lid, dur, req = A[a + 1], A[a + 2], A[a + 3], A[a + 6]
    local nnow = tonumber(now)
    -- what the operation alone would scan first (purge, reclaim): nothing, or stop here
    if not nnow or nnow > C.xh then
      break
    end
    -- the next Available worker, dropping what is not (as its own RPOP loop would); only
    -- its created time and app-id are needed (what `wparse` would split out)
    local pid, cre, app
    while p <= np and not cre do
      pid = pids[p]
      local wrec = wrecs[p]
      p = p + 1
      if wrec and not used[pid] then
        cre, app = string.match(wrec, '^A %S+ %S+ %S+ (%S+) (.*)$')
      end
    end
    if not cre then
      break
    end
    used[pid] = true
    local rec, e
    lid, rec, e = lease_record(pid, app, lid, req, dur, nil, now, nnow)
    recount('A', 'L')
    n2 = n2 + 2
    leases[n2 - 1], leases[n2] = lid, rec
    exps[n2 - 1], exps[n2] = e, lid
    workers[n2 - 1], workers[n2] = pid, 'L ' .. lid .. ' ' .. now .. ' - ' .. cre .. ' ' .. app
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 7, 'leased', C.P, C.A
    out[o + 5], out[o + 6], out[o + 7], out[o + 8] = C.L, C.D, 0, rec
    o = o + 8
    done = done + 1
  end
  -- workers popped but not reached go back, in their order (RPOP took from the tail)
  if p <= np then
    local back = {}
    for j = np, p, -1 do
      back[#back + 1] = pids[j]
    end
    call('RPUSH', K_AVAIL, unpack(back))
  end
  if done > 0 then
    call('HSET', K_LEASES, unpack(leases))
    call('ZADD', K_EXP, unpack(exps))
    call('HSET', K_WORKERS, unpack(workers))
  end
  return done, o
end

-- Releases of ARGV[at..] (`count` of them, arity 4) as one run; as `acquire_run`.
local function release_run(A, at, count, out, o)
  if not load_state() or C.qh ~= NONE then
    return 0, o
  end
  local lids = {}
  for k = 0, count - 1 do
    lids[k + 1] = A[at + k * 5 + 2]
  end
  local recs = call('HMGET', K_LEASES, unpack(lids))
  -- the leases that can run, in order, up to the first that cannot
  local n, seen, acqs, tks, pids = 0, {}, {}, {}, {}
  for k = 1, count do
    local rec, lid = recs[k], lids[k]
    if not rec or seen[lid] then
      break
    end
    local tok, acq, _, tk, pid = lparse(rec)
    if not tok or tok ~= A[at + (k - 1) * 5 + 3] or seen[pid] then
      break
    end
    seen[lid], seen[pid] = true, true
    n = k
    acqs[k], tks[k], pids[k] = acq, tk, pid
  end
  if n == 0 then
    return 0, o
  end
  local wrecs = call('HMGET', K_WORKERS, unpack(pids))
  local ended, tickets, workers, avail = {}, {}, {}, {}
  local done = 0
  while done < n do
    local k = done + 1
    local a = at + done * 5
    local now, success = A[a + 1], A[a + 4]
    local nnow = tonumber(now)
    local rec, acq, tk, pid = recs[k], acqs[k], tks[k], pids[k]
    -- only the state and the created time and app-id are needed (see `wparse`)
    local st, tail
    if wrecs[k] then
      st, tail = string.match(wrecs[k], '^(%a) %S+ %S+ %S+ (%S+ .*)$')
    end
    if not nnow or not st then
      break
    end
    local minute = math.floor(nnow / 60000)
    local bk = BUCKETS[minute % 60]
    load_state(bk)
    ended[#ended + 1] = lids[k]
    if tk ~= '-' then
      tickets[#tickets + 1] = tk
    end
    local held = nnow - tonumber(acq)
    if held < 0 then
      held = 0
    end
    local bucket = count_release(minute, bk, held, success)
    if bucket then
      flush(bk, bucket)
    end
    -- free_worker with nobody waiting: a draining worker only goes idle
    if st ~= 'D' then
      recount(st, 'A')
      st = 'A'
      avail[#avail + 1] = pid
    end
    local wrec = st .. ' - ' .. now .. ' ' .. now .. ' ' .. tail
    workers[k + k - 1], workers[k + k] = pid, wrec
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 6, 'ok', rec, held
    out[o + 5], out[o + 6], out[o + 7] = wrec, false, false
    o = o + 7
    done = k
  end
  if done > 0 then
    call('HDEL', K_LEASES, unpack(ended))
    call('ZREM', K_EXP, unpack(ended))
    if #tickets > 0 then
      call('HDEL', K_TICKETS, unpack(tickets))
    end
    call('HSET', K_WORKERS, unpack(workers))
    if #avail > 0 then
      call('RPUSH', K_AVAIL, unpack(avail))
    end
  end
  return done, o
end

local RUNS = { acquire = acquire_run, release = release_run }

redis.register_function('{lib}_batch', function(KEYS, ARGV)
  begin_batch(KEYS)
  local out, o = {}, 0
  local i, n = 1, #ARGV
  while i <= n do
    local name = ARGV[i]
    local arity = ARITY[name]
    if not arity then
      o = put(out, o, { 'error', 'unknown batch operation ' .. tostring(name) })
      break
    end
    local step = 1 + arity
    local run = RUNS[name]
    local done = 0
    if run and ARGV[i + step] == name then
      local count = 1
      while ARGV[i + count * step] == name do
        count = count + 1
      end
      done, o = run(ARGV, i, count, out, o)
      i = i + done * step
    end
    if done == 0 then
      -- alone: the first of a run that could not start, or not part of one
      local ok, r = pcall(OPS[name], KEYS, { unpack(ARGV, i + 1, i + arity) })
      if not ok then
        r = { 'error', error_text(r) }
      end
      o = put(out, o, r)
      i = i + step
    end
  end
  flush_batch()
  return out
end)
