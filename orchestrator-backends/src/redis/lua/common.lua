-- Shared prelude of every lease-store script (prepended at compile time).
-- KEYS[1] is the pool's key base `{prefix}pool:{P}:`; every key below derives from it, so
-- all of a pool's keys share the hash tag `{P}` (one cluster slot).
-- Records are compact strings, never JSON parsed here (see leases.rs for the layout):
--   worker  `S LID UPD IDLE CREATED APPID`   (S = P|A|L|D, `-` for none)
--   lease   `TOKEN ACQ EXP TICKET #PID PID #APP APP REQ`  (REQ: JSON made by the caller)
--   ticket  `W DEADLINE SEQ DUR PRIO REQ` while waiting, `G LEASEID` once granted
-- The hash `state` holds the config (`json`, `max`, `dur`), every counter a hot path
-- touches packed in one field `ctr` = `P A L D TOK SEQ COMPLETED FAILED RECLAIMED`
-- (workers per state, last fencing token, queue sequence, lifetime totals) as nine
-- little-endian doubles (`struct.pack('<ddddddddd')`: exact integers up to 2^53, and
-- unpacking is far cheaper than matching text), the metrics
-- buckets `b:{minute % 60}` and the last scale event `ls`. A script reads what it needs with
-- one HMGET and writes it back with one HSET (`flush`): inside a script every redis.call
-- and every argument or reply field converted costs time, so one packed field beats one
-- HINCRBY per change.
local B = KEYS[1]
local K_STATE = B .. 'state'
local K_WORKERS = B .. 'workers'
local K_APPIDS = B .. 'appids'
local K_AVAIL = B .. 'avail'
local K_LEASES = B .. 'leases'
local K_EXP = B .. 'exp'
local K_QUEUE = B .. 'queue'
local K_TICKETS = B .. 'tickets'
local K_TDL = B .. 'tdl'
local call = redis.call

local function s(n)
  return string.format('%d', n)
end

local function grant_key(tk)
  return B .. 'grant:' .. tk
end

local function wparse(rec)
  local st, lid, upd, idle, cre, app =
    string.match(rec, '^(%a) (%S+) (%S+) (%S+) (%S+) (.*)$')
  if not st then
    return nil
  end
  return { st = st, lid = lid, upd = upd, idle = idle, cre = cre, app = app }
end

local function wformat(w)
  return w.st .. ' ' .. w.lid .. ' ' .. w.upd .. ' ' .. w.idle .. ' ' .. w.cre .. ' ' .. w.app
end

-- Worker `pid`: the parsed record and the stored one, or nil and the reply that says why
-- there is none.
local function wload(pid)
  local wrec = call('HGET', K_WORKERS, pid)
  if not wrec then
    return nil, { 'noworker' }
  end
  local w = wparse(wrec)
  if not w then
    return nil, { 'corrupt', 'worker ' .. pid }
  end
  return w, nil, wrec
end

-- token, acquired, expires, ticket, pid, position of the rest after the pid
local function lparse(rec)
  local tok, acq, exp, tk, n, p = string.match(rec, '^(%d+) (%S+) (%S+) (%S+) (%d+) ()')
  if not tok then
    return nil
  end
  local pid = string.sub(rec, p, p + tonumber(n) - 1)
  return tok, acq, exp, tk, pid
end

-- ticket record `W DEADLINE SEQ DUR PRIO REQ`
local function tparse(rec)
  return string.match(rec, '^W (%S+) (%S+) (%S+) (%S+) (.*)$')
end

local function qmember(seq, tk)
  return string.format('%020d', tonumber(seq)) .. ':' .. tk
end

-- The loaded counters (see `load_state`) and whether they changed.
local C = { P = 0, A = 0, L = 0, D = 0, tok = 0, seq = 0, tc = 0, tf = 0, tr = 0 }
local dirty = false
local CTR = '<ddddddddd'

-- Loads `dur`, the counters and the `extra` fields into `C`. Returns false when the pool
-- does not exist (no `dur`).
local function load_state(...)
  local v = call('HMGET', K_STATE, 'dur', 'ctr', ...)
  if not v[1] then
    return false
  end
  C.dur = v[1]
  if v[2] and #v[2] == 72 then
    C.P, C.A, C.L, C.D, C.tok, C.seq, C.tc, C.tf, C.tr = struct.unpack(CTR, v[2])
  end
  local n = select('#', ...)
  for i = 1, n do
    C[select(i, ...)] = v[2 + i]
  end
  return true
end

-- Writes the counters back with one HSET, plus `more` field/value pairs.
local function flush(...)
  if not dirty and select('#', ...) == 0 then
    return
  end
  call('HSET', K_STATE, 'ctr', struct.pack(CTR, C.P, C.A, C.L, C.D, C.tok, C.seq, C.tc, C.tf,
    C.tr), ...)
end

-- Moves a worker to state `st`, keeping the per-state counts right.
local function move(w, st)
  if w.st ~= st then
    C[w.st] = (C[w.st] or 0) - 1
    C[st] = (C[st] or 0) + 1
    w.st = st
    dirty = true
  end
end

-- Name-based uuid for a lease granted inside a script (a handoff): unique because the
-- ticket id is a random uuid and tokens never repeat.
local function handoff_id(tk, tok)
  local h = redis.sha1hex(tk .. ':' .. tok)
  local v = string.sub('89ab', tonumber(string.sub(h, 17, 17), 16) % 4 + 1, tonumber(string.sub(h, 17, 17), 16) % 4 + 1)
  return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-5' .. string.sub(h, 14, 16) .. '-'
    .. v .. string.sub(h, 18, 20) .. '-' .. string.sub(h, 21, 32)
end

-- Leases worker `pid` (parsed record `w`) to a request. `lid` nil = a handoff to ticket `tk`.
-- Returns lease id, record.
local function grant(pid, w, lid, req, dur, tk, now)
  if dur == '0' then
    dur = C.dur or '300000'
  end
  C.tok = C.tok + 1
  dirty = true
  local tok = C.tok
  if not lid then
    lid = handoff_id(tk, s(tok))
  end
  local exp = s(tonumber(now) + tonumber(dur))
  local rec = s(tok) .. ' ' .. now .. ' ' .. exp .. ' ' .. (tk or '-') .. ' ' .. #pid .. ' ' .. pid
    .. ' ' .. #w.app .. ' ' .. w.app .. ' ' .. req
  call('HSET', K_LEASES, lid, rec)
  call('ZADD', K_EXP, exp, lid)
  move(w, 'L')
  w.lid = lid
  w.upd = now
  w.idle = '-'
  call('HSET', K_WORKERS, pid, wformat(w))
  return lid, rec
end

-- Drops waiting tickets whose wait has ended (deadline <= now): O(ended).
local function purge(now)
  local ended = call('ZRANGEBYSCORE', K_TDL, '-inf', now)
  if #ended == 0 then
    return
  end
  for _, tk in ipairs(ended) do
    local trec = call('HGET', K_TICKETS, tk)
    if trec then
      local _, seq = tparse(trec)
      if seq then
        call('ZREM', K_QUEUE, qmember(seq, tk))
        call('HDEL', K_TICKETS, tk)
      end
    end
  end
  call('ZREMRANGEBYSCORE', K_TDL, '-inf', now)
end

-- A worker just became free: to the queue head if a caller waits, else Available; a
-- draining one only goes idle. Saves the worker record. Returns the handoff lease id and
-- record, or nil.
local function free_worker(pid, w, now)
  w.lid = '-'
  w.idle = now
  w.upd = now
  if w.st == 'D' then
    call('HSET', K_WORKERS, pid, wformat(w))
    return nil
  end
  while true do
    local head = call('ZPOPMIN', K_QUEUE)
    if not head[1] then
      break
    end
    local tk = string.sub(head[1], 22)
    local trec = call('HGET', K_TICKETS, tk)
    local deadline, _, dur, _, req = nil, nil, nil, nil, nil
    if trec then
      deadline, _, dur, _, req = tparse(trec)
    end
    if deadline then
      call('ZREM', K_TDL, tk)
      local lid, rec = grant(pid, w, nil, req, dur, tk, now)
      call('HSET', K_TICKETS, tk, 'G ' .. lid)
      local gk = grant_key(tk)
      call('RPUSH', gk, lid)
      local ttl = tonumber(deadline) - tonumber(now)
      if ttl < 0 then
        ttl = 0
      end
      call('PEXPIRE', gk, s(ttl + 60000))
      return lid, rec
    end
  end
  move(w, 'A')
  call('HSET', K_WORKERS, pid, wformat(w))
  call('RPUSH', K_AVAIL, pid)
  return nil
end

-- Removes a lease from every index (not from its worker); drops its uncollected ticket.
local function end_lease(lid, tk)
  call('HDEL', K_LEASES, lid)
  call('ZREM', K_EXP, lid)
  if tk and tk ~= '-' then
    call('HDEL', K_TICKETS, tk)
  end
end

-- Ends every lease with expires < now (earliest first) and frees its worker. Appends
-- lease id and record to `out` when given.
local function reclaim(now, out)
  local ended = call('ZRANGEBYSCORE', K_EXP, '-inf', '(' .. now)
  if #ended == 0 then
    return 0
  end
  local n = 0
  for _, lid in ipairs(ended) do
    local rec = call('HGET', K_LEASES, lid)
    if rec then
      local _, _, _, tk, pid = lparse(rec)
      end_lease(lid, tk)
      n = n + 1
      if out then
        out[#out + 1] = lid
        out[#out + 1] = rec
      end
      local wrec = pid and call('HGET', K_WORKERS, pid)
      local w = wrec and wparse(wrec)
      if w and w.lid == lid then
        free_worker(pid, w, now)
      end
    else
      call('ZREM', K_EXP, lid)
    end
  end
  if n > 0 then
    C.tr = C.tr + n
    dirty = true
  end
  return n
end
