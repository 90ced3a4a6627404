//! The Lua scripts that make each Redis write atomic: the data change and its feed entry
//! happen together or not at all.
//!
//! Every writing script first checks that each key it touches is absent or of the expected
//! type, so that it fails before its first write (Redis does not roll a script back). Scripts
//! are declared with a `#!lua` shebang, so a server out of memory refuses them up front.

use redis::Script;
use std::sync::LazyLock;

/// Helpers shared by the scripts. `now` and scores are Unix seconds.
macro_rules! prelude {
    () => {
        r#"
local function check_types(keys, types)
  for i, key in ipairs(keys) do
    local found = redis.call('TYPE', key)['ok']
    if found ~= 'none' and found ~= types[i] then
      return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. found .. ', not a ' .. types[i])
    end
  end
  return nil
end

-- Deletes at most `limit` entries that expire at or before `now`; returns how many.
local function purge(rev, exp, idx, now, limit)
  local due = redis.call('ZRANGE', exp, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, key in ipairs(due) do
    redis.call('HDEL', rev, key)
    redis.call('ZREM', exp, key)
    redis.call('ZREM', idx, key)
  end
  return #due
end

-- The stored JSON of `key` if it is live at `now` and readable, else nil.
local function live_value(rev, exp, key, now)
  local value = redis.call('HGET', rev, key)
  if not value then return nil end
  local score = redis.call('ZSCORE', exp, key)
  if not score or tonumber(score) <= tonumber(now) then return nil end
  local ok, decoded = pcall(cjson.decode, value)
  if not ok or type(decoded) ~= 'table' or type(decoded.key) ~= 'table'
    or type(decoded.expires_at) ~= 'number' then return nil end
  return value
end
"#
    };
}

/// KEYS: rev, exp, idx, feed. ARGV: encoded key, JSON, expires_at, now, feed max length,
/// purge limit. Returns `{1, ''}` when recorded, `{0, existing JSON}` when a live one exists.
pub(super) static INSERT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "#!lua\n",
        prelude!(),
        r#"
local rev, exp, idx, feed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local key, json, expires_at, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wrong = check_types({rev, exp, idx, feed}, {'hash', 'zset', 'zset', 'stream'})
if wrong then return wrong end
purge(rev, exp, idx, now, tonumber(ARGV[6]))
local existing = live_value(rev, exp, key, now)
if existing then return {0, existing} end
redis.call('HSET', rev, key, json)
redis.call('ZADD', exp, expires_at, key)
redis.call('ZADD', idx, 0, key)
redis.call('XADD', feed, 'MAXLEN', '~', ARGV[5], '*', 'op', 'put', 'rev', json)
return {1, ''}
"#
    ))
});

/// Compare-and-set of a live revocation. KEYS: rev, exp, idx, feed. ARGV: encoded key,
/// expected JSON, new JSON, new expires_at, now, feed max length, purge limit. Returns
/// `{1, ''}` when the live value was the expected one and was replaced (with a feed entry),
/// else `{0, the live JSON or ''}`.
pub(super) static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "#!lua\n",
        prelude!(),
        r#"
local rev, exp, idx, feed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local key, expected, json, expires_at, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local wrong = check_types({rev, exp, idx, feed}, {'hash', 'zset', 'zset', 'stream'})
if wrong then return wrong end
purge(rev, exp, idx, now, tonumber(ARGV[7]))
local current = live_value(rev, exp, key, now)
if current ~= expected then return {0, current or ''} end
redis.call('HSET', rev, key, json)
redis.call('ZADD', exp, expires_at, key)
redis.call('ZADD', idx, 0, key)
redis.call('XADD', feed, 'MAXLEN', '~', ARGV[6], '*', 'op', 'put', 'rev', json)
return {1, ''}
"#
    ))
});

/// KEYS: rev, exp, idx, feed. ARGV: encoded key, now, feed max length, purge limit.
/// Returns 1 if a live revocation was removed, else 0.
pub(super) static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "#!lua\n",
        prelude!(),
        r#"
local rev, exp, idx, feed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local key, now = ARGV[1], ARGV[2]
local wrong = check_types({rev, exp, idx, feed}, {'hash', 'zset', 'zset', 'stream'})
if wrong then return wrong end
purge(rev, exp, idx, now, tonumber(ARGV[4]))
local live = live_value(rev, exp, key, now)
redis.call('HDEL', rev, key)
redis.call('ZREM', exp, key)
redis.call('ZREM', idx, key)
if not live then return 0 end
redis.call('XADD', feed, 'MAXLEN', '~', ARGV[3], '*', 'op', 'del', 'key', key)
return 1
"#
    ))
});

/// KEYS: rev, exp, idx. ARGV: now, limit. Returns how many expired entries were deleted.
pub(super) static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "#!lua\n",
        prelude!(),
        r#"
local rev, exp, idx = KEYS[1], KEYS[2], KEYS[3]
local wrong = check_types({rev, exp, idx}, {'hash', 'zset', 'zset'})
if wrong then return wrong end
return purge(rev, exp, idx, ARGV[1], tonumber(ARGV[2]))
"#
    ))
});

/// Reads the feed's state. KEYS: epoch, feed. Returns `{epoch or '', exists (0/1),
/// last-generated-id, max-deleted-entry-id, entries-added, length, master_replid}` (Redis 7.0
/// and later); the replication id changes when another node becomes the master.
const FEED_STATE_BODY: &str = r#"
local epoch = redis.call('GET', KEYS[1]) or ''
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or ''
if redis.call('EXISTS', KEYS[2]) == 0 then return {epoch, 0, '0-0', '0-0', 0, 0, replid} end
local info = redis.call('XINFO', 'STREAM', KEYS[2])
local state = {epoch, 1, '0-0', '0-0', -1, -1, replid}
for i = 1, #info - 1, 2 do
  local name = info[i]
  if name == 'last-generated-id' then state[3] = info[i + 1] end
  if name == 'max-deleted-entry-id' then state[4] = info[i + 1] end
  if name == 'entries-added' then state[5] = info[i + 1] end
  if name == 'length' then state[6] = info[i + 1] end
end
return state
"#;

/// See [`FEED_STATE_BODY`]; read-only.
pub(super) static FEED_STATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("#!lua flags=no-writes\n{FEED_STATE_BODY}")));

/// Like [`FEED_STATE`], but first sets the epoch to `ARGV[1]` if there is none, so that a
/// snapshot's position always names one.
pub(super) static FEED_HEAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "#!lua\nredis.call('SET', KEYS[1], ARGV[1], 'NX')\n{FEED_STATE_BODY}"
    ))
});

/// KEYS: the mark. ARGV: expires_at, now. Returns 1 when newly recorded (value `expires_at`,
/// expiring `expires_at - now` seconds from now), 0 when a live mark exists.
pub(super) static REMEMBER_ONCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"#!lua
local expires_at, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local found = redis.call('TYPE', KEYS[1])['ok']
if found ~= 'none' and found ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. found .. ', not a string')
end
local existing = tonumber(redis.call('GET', KEYS[1]) or '')
if existing and existing > now then return 0 end
if expires_at <= now then return 1 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', expires_at - now)
return 1
"#,
    )
});
