//! The Lua scripts of the Redis store, one per multi-key operation (see the parent
//! module's docs for what each must do atomically). Built once per process.

use std::sync::LazyLock;

use redis::Script;

/// Server time in milliseconds, as a Lua expression prelude.
const NOW_MS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// Reads a `{"Version":n}` record (or a plain integer); `nil, err` when undecodable.
const READ_VERSION: &str = r#"
local function read_version(key)
  local raw = redis.call('GET', key)
  if not raw then return 0 end
  local n = tonumber(raw)
  if n then return n end
  local ok, rec = pcall(cjson.decode, raw)
  if ok and type(rec) == 'table' and type(rec.Version) == 'number' then return rec.Version end
  return nil, 'CORRUPT ' .. key .. ' is not {"Version": n}'
end
"#;

pub(super) struct Scripts {
    pub(super) put_indexed: Script,
    pub(super) list_indexed: Script,
    pub(super) remove_indexed: Script,
    pub(super) set_route_if: Script,
    pub(super) next_version: Script,
    pub(super) save_config: Script,
    pub(super) config_history: Script,
    pub(super) mark_stable: Script,
    pub(super) prune_history: Script,
    pub(super) begin_deploy: Script,
    pub(super) end_deploy: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    // KEYS[1] record, KEYS[2] index; ARGV[1] JSON, ARGV[2] TTL ms, ARGV[3] index member.
    let put = format!(
        r#"{NOW_MS}
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
"#
    );
    Scripts {
        put_indexed: Script::new(&format!("{put}\nreturn 1")),
        // KEYS[1] index; ARGV[1] record key prefix. Returns member, JSON, member, JSON...
        list_indexed: Script::new(&format!(
            r#"{NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {{}}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('GET', ARGV[1] .. m)
  if v then
    out[#out + 1] = m
    out[#out + 1] = v
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
return out"#
        )),
        // KEYS[1] record, KEYS[2] index; ARGV[1] member. Returns 1 if a live record existed.
        remove_indexed: Script::new(
            r#"
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n"#,
        ),
        // As put, plus ARGV[4] 'create' or 'refresh' and ARGV[5] the expected app-id in
        // ASCII lower case. Returns 1 if it wrote.
        set_route_if: Script::new(&format!(
            r#"
local cur = redis.call('GET', KEYS[1])
if ARGV[4] == 'create' then
  if cur then return 0 end
else
  if not cur then return 0 end
  local ok, rec = pcall(cjson.decode, cur)
  if not ok or type(rec) ~= 'table' or type(rec.AppId) ~= 'string' then
    return redis.error_reply('CORRUPT ' .. KEYS[1] .. ' has no string AppId')
  end
  if string.lower(rec.AppId) ~= ARGV[5] then return 0 end
end
{put}
return 1"#
        )),
        // KEYS[1] counter. Returns the new value.
        next_version: Script::new(&format!(
            r#"{READ_VERSION}
local v, err = read_version(KEYS[1])
if not v then return redis.error_reply(err) end
v = v + 1
redis.call('SET', KEYS[1], string.format('{{"Version":%d}}', v))
return v"#
        )),
        // KEYS[1] counter, KEYS[2] current, KEYS[3] history index; ARGV[1] history key
        // prefix, ARGV[2] expected latest ('' for none), ARGV[3] TTL ms, ARGV[4] the JSON
        // after `{"Version":0`. Returns {1, n} when saved, {0, latest} on a conflict.
        save_config: Script::new(&format!(
            r#"{READ_VERSION}
local latest, err = read_version(KEYS[1])
if not latest then return redis.error_reply(err) end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= latest then return {{0, latest}} end
local n = latest + 1
local id = string.format('%d', n)
local body = '{{"Version":' .. id .. ARGV[4]
redis.call('SET', ARGV[1] .. id, body, 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], n, id)
redis.call('SET', KEYS[2], body)
redis.call('SET', KEYS[1], '{{"Version":' .. id .. '}}')
return {{1, n}}"#
        )),
        // KEYS[1] current, KEYS[2] history index; ARGV[1] history key prefix, ARGV[2] how
        // many history entries at most. Returns current (nil if none), then entries newest
        // first.
        config_history: Script::new(
            r#"
local out = {}
out[1] = redis.call('GET', KEYS[1])
local want = tonumber(ARGV[2])
for _, m in ipairs(redis.call('ZREVRANGE', KEYS[2], 0, -1)) do
  if #out - 1 >= want then break end
  local v = redis.call('GET', ARGV[1] .. m)
  if v then out[#out + 1] = v else redis.call('ZREM', KEYS[2], m) end
end
return out"#,
        ),
        // KEYS[1] history entry, KEYS[2] current, KEYS[3] last stable; ARGV[1] version,
        // ARGV[2] the entry's JSON with Stable = true. Returns 1 if the version exists.
        mark_stable: Script::new(
            r#"
local v = tonumber(ARGV[1])
local function version_of(key)
  local raw = redis.call('GET', key)
  if not raw then return false end
  local ok, rec = pcall(cjson.decode, raw)
  if ok and type(rec) == 'table' and type(rec.Version) == 'number' then return rec.Version end
  return nil
end
local in_history = redis.call('EXISTS', KEYS[1]) == 1
local cur = version_of(KEYS[2])
if cur == nil then return redis.error_reply('CORRUPT ' .. KEYS[2] .. ' has no numeric Version') end
local is_current = cur ~= false and cur == v
if not in_history and not is_current then return 0 end
local last = version_of(KEYS[3])
if last == nil then return redis.error_reply('CORRUPT ' .. KEYS[3] .. ' has no numeric Version') end
if in_history then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end
if is_current then redis.call('SET', KEYS[2], ARGV[2]) end
if last == false or last <= v then redis.call('SET', KEYS[3], ARGV[2]) end
return 1"#,
        ),
        // KEYS[1] counter, KEYS[2] history index; ARGV[1] history key prefix, ARGV[2]
        // versions to keep ('' for all). Returns how many live entries it deleted.
        // KEYS[1] the in-progress hash; ARGV[1] deployment id, ARGV[2] JSON.
        begin_deploy: Script::new(
            r#"redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'config', ARGV[2])
return 1"#,
        ),
        // KEYS[1] the in-progress hash; ARGV[1] deployment id. 1 when it was that deploy's.
        end_deploy: Script::new(
            r#"if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0"#,
        ),
        prune_history: Script::new(&format!(
            r#"{READ_VERSION}
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. m) == 0 then redis.call('ZREM', KEYS[2], m) end
end
if ARGV[2] == '' then return 0 end
local latest, err = read_version(KEYS[1])
if not latest then return redis.error_reply(err) end
local cutoff = latest - tonumber(ARGV[2])
if cutoff < 1 then return 0 end
local removed = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)) do
  removed = removed + redis.call('DEL', ARGV[1] .. m)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
return removed"#
        )),
    }
});
