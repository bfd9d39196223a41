-- Shared definitions of every lease-store operation. leases.rs runs each operation file
-- (its body) in one of two ways, and both call `init(KEYS)` before the body:
--   EVALSHA: this file, `init(KEYS)` and the body as one script, so all of this runs on
--     every call;
--   FCALL: this file once as a Redis Functions library, each body registered as a
--     function of it; only `init` and the body run per call. Defining the helpers here
--     (closures with upvalues) cost about a quarter of each call's instructions, which
--     is why.
-- So nothing at this level may touch `KEYS`, `ARGV`, `redis.call`, `string` or `math` (a
-- library is loaded without them): per-call state is set by `init`. (Splitting records
-- with plain `string.find`s instead of one `string.match` was tried: 15% more
-- instructions per pair, BENCHMARKS.md.)
-- KEYS[1] is the pool's key base `{prefix}pool:{P}:`; every key below derives from it, so
-- all of a pool's keys share the hash tag `{P}` (one cluster slot).
-- Records are compact strings, never JSON parsed here (see leases.rs for the layout):
--   worker  `S LID UPD IDLE CREATED APPID`   (S = P|A|L|D, `-` for none)
--   lease   `TOKEN ACQ EXP TICKET #PID PID #APP APP REQ`  (REQ: JSON made by the caller)
--   ticket  `W DEADLINE SEQ DUR PRIO REQ` while waiting, `G LEASEID` once granted
--   bucket  `b:{minute % 60}` = MINUTE COMPLETED FAILED LEASE_MS as four little-endian
--           doubles (`struct`, like `ctr`); `status` turns them into text
-- The hash `state` holds the config (`json`, `max`, `dur`), every counter a hot path
-- touches packed in one field `ctr` = `P A L D TOK SEQ COMPLETED FAILED RECLAIMED XH QH`
-- (workers per state, last fencing token, queue sequence, lifetime totals, two hints) as
-- eleven little-endian doubles (`struct.pack('<ddddddddddd')`: exact integers up to 2^53,
-- and unpacking is far cheaper than matching text; a nine-double `ctr` written before the
-- hints existed reads with both hints 0), the metrics buckets and the last scale event
-- `ls`. A script reads what it needs with
-- one HMGET and writes it back with one HSET (`flush`): inside a script every redis.call
-- and every argument or reply field converted costs time, so one packed field beats one
-- HINCRBY per change.
-- The hints spare the hot paths the scans that almost never find anything:
--   XH <= every expiry in `exp` (infinity when `exp` is empty): `reclaim` scans only
--      once `now` has passed it;
--   QH <= every deadline in `tdl` (infinity when nobody waits): `purge` scans only once
--      `now` has reached it, and a freed worker looks at the queue only when QH is finite.
-- Anything that adds an expiry or a deadline lowers the hint; removals leave it a lower
-- bound; a scan sets it back to the smallest score left. 0 (unknown) forces the scan.
local B, K_STATE, K_WORKERS, K_APPIDS, K_AVAIL, K_LEASES, K_EXP, K_QUEUE, K_TICKETS, K_TDL
local call

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
local C, dirty
-- A batch (batch.lua, library only) runs several operations of one pool in one call:
-- the state is read once (`loaded`; `fetched` = extra fields already in `C`) and written
-- once at the end (`pending` = the set of extra fields to write), instead of once per
-- operation.
local batching, loaded, fetched, pending = false, false, nil, nil
local CTR = '<ddddddddddd'
local CTR9 = '<ddddddddd'
local BUCKET = '<dddd'
local NONE = 1 / 0

-- The `appids` field of app-id `app`: lower-cased, because app-ids compare without ASCII
-- case (`string.lower` folds ASCII only in Redis's C locale). The worker record keeps the
-- spelling. Entries written before the fold are under their spelling: lookups try that
-- too, removals delete both, so existing pools keep working.
local function appid_field(app)
  return string.lower(app)
end

-- Per-call state: the keys of the pool `keys[1]`, fresh counters. As a library the keys
-- outlive the call, so a pool called again reuses them (nine concatenations were a
-- tenth of an acquire); strings compare by identity, so the check is free.
local function init(keys)
  call = redis.call
  C = { P = 0, A = 0, L = 0, D = 0, tok = 0, seq = 0, tc = 0, tf = 0, tr = 0, xh = 0, qh = 0 }
  dirty = false
  batching, loaded = false, false
  if keys[1] == B then
    return
  end
  B = keys[1]
  K_STATE = B .. 'state'
  K_WORKERS = B .. 'workers'
  K_APPIDS = B .. 'appids'
  K_AVAIL = B .. 'avail'
  K_LEASES = B .. 'leases'
  K_EXP = B .. 'exp'
  K_QUEUE = B .. 'queue'
  K_TICKETS = B .. 'tickets'
  K_TDL = B .. 'tdl'
end

-- Loads `dur`, the counters and the `extra` fields into `C`. Returns false when the pool
-- does not exist (no `dur`).
local function load_state(...)
  local n = select('#', ...)
  if loaded then
    for i = 1, n do
      local f = select(i, ...)
      if not fetched[f] then
        C[f] = call('HGET', K_STATE, f)
        fetched[f] = true
      end
    end
    return true
  end
  local v = call('HMGET', K_STATE, 'dur', 'ctr', ...)
  if not v[1] then
    return false
  end
  C.dur = v[1]
  C.ndur = tonumber(v[1])
  if v[2] then
    if #v[2] == 88 then
      C.P, C.A, C.L, C.D, C.tok, C.seq, C.tc, C.tf, C.tr, C.xh, C.qh = struct.unpack(CTR, v[2])
    elseif #v[2] == 72 then
      C.P, C.A, C.L, C.D, C.tok, C.seq, C.tc, C.tf, C.tr = struct.unpack(CTR9, v[2])
    end
  end
  for i = 1, n do
    C[select(i, ...)] = v[2 + i]
  end
  if batching then
    loaded = true
    for i = 1, n do
      fetched[select(i, ...)] = true
    end
  end
  return true
end

-- Writes the counters back with one HSET, plus `more` field/value pairs; in a batch only
-- notes them, for `flush_batch`.
local function flush(...)
  if batching then
    for i = 1, select('#', ...), 2 do
      local f, v = select(i, ...)
      C[f] = v
      fetched[f] = true
      pending[f] = true
    end
    return
  end
  if not dirty and select('#', ...) == 0 then
    return
  end
  call('HSET', K_STATE, 'ctr', struct.pack(CTR, C.P, C.A, C.L, C.D, C.tok, C.seq, C.tc, C.tf,
    C.tr, C.xh, C.qh), ...)
end

-- Starts a batch on the pool `keys[1]`.
local function begin_batch(keys)
  init(keys)
  batching, loaded, fetched, pending = true, false, {}, {}
end

-- Ends a batch: one HSET of the counters and every field its operations wrote (the last
-- value of each, read back from `C`).
local function flush_batch()
  batching = false
  local more = {}
  for f in pairs(pending) do
    more[#more + 1] = f
    more[#more + 1] = C[f]
  end
  flush(unpack(more))
end

-- Counts a worker moving from state `from` to state `to` in the per-state counts.
local function recount(from, to)
  if from ~= to then
    C[from] = (C[from] or 0) - 1
    C[to] = (C[to] or 0) + 1
    dirty = true
  end
end

-- Moves a worker (parsed record `w`) to state `st`.
local function move(w, st)
  recount(w.st, st)
  w.st = st
end

-- Name-based uuid for a lease granted inside a script (a handoff): unique because the
-- ticket id is a random uuid and tokens never repeat.
local function handoff_id(tk, tok)
  local h = redis.sha1hex(tk .. ':' .. tok)
  local v = string.sub('89ab', tonumber(string.sub(h, 17, 17), 16) % 4 + 1, tonumber(string.sub(h, 17, 17), 16) % 4 + 1)
  return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-5' .. string.sub(h, 14, 16) .. '-'
    .. v .. string.sub(h, 18, 20) .. '-' .. string.sub(h, 21, 32)
end

-- A lease of worker `pid` (app-id `app`) to a request: takes the next fencing token and
-- lowers the expiry hint; returns lease id, lease record and expiry. `lid` nil = a
-- handoff to ticket `tk`.
local function lease_record(pid, app, lid, req, dur, tk, now, nnow)
  local ndur
  if dur == '0' then
    ndur = C.ndur or 300000
  else
    ndur = tonumber(dur)
  end
  C.tok = C.tok + 1
  dirty = true
  local tok = C.tok
  if not lid then
    lid = handoff_id(tk, s(tok))
  end
  local e = nnow + ndur
  -- numbers by `format`: concatenated with `..` they are converted by a slower path (and
  -- `%s` of a short string is a `sprintf` too); redis.call takes the number `e` as it is
  local rec = string.format('%d %s %d %s %d ', tok, now, e, tk or '-', #pid) .. pid
    .. string.format(' %d ', #app) .. app .. ' ' .. req
  if e < C.xh then
    C.xh = e
  end
  return lid, rec, e
end

-- Leases worker `pid` (parsed record `w`) to a request and writes it. `lid` nil = a
-- handoff to ticket `tk`. Returns lease id, record.
local function grant(pid, w, lid, req, dur, tk, now)
  local rec, e
  lid, rec, e = lease_record(pid, w.app, lid, req, dur, tk, now, tonumber(now))
  call('HSET', K_LEASES, lid, rec)
  call('ZADD', K_EXP, e, lid)
  move(w, 'L')
  w.lid = lid
  w.upd = now
  w.idle = '-'
  call('HSET', K_WORKERS, pid, wformat(w))
  return lid, rec
end

-- The metrics bucket field of minute `minute`.
local BUCKETS = {}
for m = 0, 59 do
  BUCKETS[m] = 'b:' .. m
end

-- Counts a finished lease (held `held` ms, ended at minute `minute`, whose bucket field
-- `bk` is loaded in `C`) in the totals and returns the bucket's new value, or nil for a
-- report older than the bucket's minute (totals only).
local function count_release(minute, bk, held, success)
  local dc, df = 0, 1
  if success == '1' then
    dc, df = 1, 0
  end
  C.tc, C.tf = C.tc + dc, C.tf + df
  dirty = true
  local bm, bc, bf, bms = minute, 0, 0, 0
  local slot = C[bk]
  if slot then
    local om, oc, of, oms
    if #slot == 32 then
      om, oc, of, oms = struct.unpack(BUCKET, slot)
    else
      -- written as text before buckets were packed
      om, oc, of, oms = string.match(slot, '^(%S+) (%d+) (%d+) (%d+)$')
    end
    if om and tonumber(om) >= minute then
      bm, bc, bf, bms = tonumber(om), tonumber(oc), tonumber(of), tonumber(oms)
    end
  end
  if bm ~= minute then
    return nil
  end
  return struct.pack(BUCKET, bm, bc + dc, bf + df, bms + held)
end

-- The smallest score of sorted set `key`, or NONE when it is empty.
local function first_score(key)
  local head = call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if head[2] then
    return tonumber(head[2])
  end
  return NONE
end

-- Drops waiting tickets whose wait has ended (deadline <= now): O(ended), and nothing at
-- all before the earliest deadline (QH).
local function purge(now)
  if tonumber(now) < C.qh then
    return
  end
  local ended = call('ZRANGEBYSCORE', K_TDL, '-inf', now)
  if #ended > 0 then
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
  C.qh = first_score(K_TDL)
  dirty = true
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
  while C.qh ~= NONE do
    local head = call('ZPOPMIN', K_QUEUE)
    if not head[1] then
      C.qh = NONE
      dirty = true
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

-- Ends every lease with expires < now (earliest first) and frees its worker: O(expired),
-- and nothing at all before the earliest expiry (XH). Appends lease id and record to `out`
-- when given.
local function reclaim(now, out)
  if tonumber(now) <= C.xh then
    return 0
  end
  local ended = call('ZRANGEBYSCORE', K_EXP, '-inf', '(' .. now)
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
  C.tr = C.tr + n
  C.xh = first_score(K_EXP)
  dirty = true
  return n
end
