-- wrk script: acquire+release pairs against a running control plane, an independent
-- load generator beside `bannou-host bench pools --http` (BENCHMARKS.md).
--
--   POOL=bench-http wrk -t1 -c50 -d5s -s scripts/wrk-lease-pairs.lua http://127.0.0.1:PORT
--
-- Each connection alternates: it acquires from pool $POOL and, once the answer names a
-- lease, its next request releases that lease with its fencing token. wrk reports
-- requests/s; the pairs/s (releases answered 200) and any other status are printed at
-- the end. Leases are queued per wrk thread, so a connection may release a lease another
-- connection of its thread acquired: each lease is still released exactly once.

local pool = os.getenv("POOL") or "bench-http"
local acquire_body = '{"poolType":"' .. pool .. '"}'
local headers = { ["Content-Type"] = "application/json" }
local token = os.getenv("BANNOU_TOKEN")
if token then
  headers["Authorization"] = "Bearer " .. token
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local pending = {}   -- leases acquired, not yet released: {id, fencing}
-- Globals, not locals: done() reads them from each thread with thread:get().
pairs_done = 0
acquired = 0
failures = 0

function init(args)
  pairs_done = 0
end

function request()
  local lease = table.remove(pending)
  if lease then
    return wrk.format("POST", "/orchestrator/processing-pool/release", headers,
      '{"leaseId":"' .. lease[1] .. '","fencingToken":' .. lease[2] .. '}')
  end
  return wrk.format("POST", "/orchestrator/processing-pool/acquire", headers, acquire_body)
end

function response(status, hdrs, body)
  if status ~= 200 then
    failures = failures + 1
    return
  end
  -- An acquire's answer names the lease; a release's only the processor.
  local id = body:match('"leaseId"%s*:%s*"([^"]+)"')
  if id then
    local fencing = body:match('"fencingToken"%s*:%s*(%d+)')
    acquired = acquired + 1
    table.insert(pending, { id, fencing or "0" })
  else
    pairs_done = pairs_done + 1
  end
end

function done(summary, latency, requests)
  local total_pairs, total_failures, total_acquired = 0, 0, 0
  for _, t in ipairs(threads) do
    total_pairs = total_pairs + t:get("pairs_done")
    total_failures = total_failures + t:get("failures")
    total_acquired = total_acquired + t:get("acquired")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("pairs: %d (%.0f pairs/s), acquired: %d, non-200 or unparsed: %d\n",
    total_pairs, total_pairs / secs, total_acquired, total_failures))
end
