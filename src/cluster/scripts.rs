//! The Lua scripts that keep shared state exact: each check or update is one script, run
//! atomically by the Redis server on its own clock (`TIME`), so N instances see one window,
//! one streak, one budget. Scripts are addressed by their SHA-1 (`EVALSHA`), so a rolling
//! upgrade that changes one runs old and new side by side without a name clash.
//!
//! Times are microseconds from `TIME`. Every key a script writes gets a TTL, so Redis holds
//! only what active keys, addresses and targets need. Money is integer pico-dollars kept as
//! decimal strings; Lua's numbers are doubles, so sums are done in two exact halves (below and
//! above 10⁹ pico-dollars).

/// `admit`: a key's budget, request window and token window, checked (and the request
/// counted) in one step.
///
/// KEYS: 1 request log (zset: member → admission time), 2 token buckets' times (zset: second
/// → newest time tokens were added), 3 token buckets' sums (hash: second → tokens, `sum`,
/// and `newest`, the newest time tokens were added at all),
/// 4 the budget's spend for this period (hash: instance → pico-dollars).
/// ARGV: 1 rpm (0 = none), 2 tpm (0 = none), 3 budget limit above 10⁹ pico-dollars and 4 its
/// rest (3 = "" for no budget), 5 this request's unique member.
///
/// Returns "allowed over_budget now requests oldest newest tokens token_retry newest_token
/// spend_high spend_low": eleven integers in one string (one value is much cheaper for the
/// client to parse than eleven); times in µs, token_retry 0 = none.
pub const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = 60000000
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])

local over, hi, lo = 0, 0, 0
if ARGV[3] ~= '' then
  for _, v in ipairs(redis.call('HVALS', KEYS[4])) do
    local n = string.len(v)
    if n > 9 then
      hi = hi + tonumber(string.sub(v, 1, n - 9))
      lo = lo + tonumber(string.sub(v, n - 8))
    else
      lo = lo + tonumber(v)
    end
  end
  hi = hi + math.floor(lo / 1000000000)
  lo = lo % 1000000000
  local lhi, llo = tonumber(ARGV[3]), tonumber(ARGV[4])
  if hi > lhi or (hi == lhi and lo >= llo) then over = 1 end
end

local rcount = 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  rcount = redis.call('ZCARD', KEYS[1])
end

local tsum, tnewest = 0, 0
if tpm > 0 then
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - window)
  if #gone > 0 then
    local sub = 0
    for _, b in ipairs(gone) do
      sub = sub + tonumber(redis.call('HGET', KEYS[3], b) or '0')
      redis.call('HDEL', KEYS[3], b)
    end
    redis.call('HINCRBY', KEYS[3], 'sum', -sub)
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  end
  local st = redis.call('HMGET', KEYS[3], 'sum', 'newest')
  tsum = tonumber(st[1] or '0')
  tnewest = tonumber(st[2] or '0')
end

local allowed = 0
if over == 0 and (rpm == 0 or rcount < rpm) and (tpm == 0 or tsum < tpm) then
  allowed = 1
  if rpm > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[5])
    redis.call('PEXPIRE', KEYS[1], 61000)
    rcount = rcount + 1
  end
end

-- The newest admission is this one when admitted; the oldest is needed only when full.
local oldest, newest = 0, 0
if rpm > 0 and rcount > 0 then
  if allowed == 1 then
    newest = now
  else
    newest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
  end
  if rcount >= rpm then
    oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
  end
end

local tretry = 0
if tpm > 0 and tsum >= tpm then
  local buckets = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local left = tsum
  for i = 1, #buckets, 2 do
    left = left - tonumber(redis.call('HGET', KEYS[3], buckets[i]) or '0')
    if left < tpm then
      tretry = tonumber(buckets[i + 1])
      break
    end
  end
end

return string.format('%.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f',
  allowed, over, now, rcount, oldest, newest, tsum, tretry, tnewest, hi, lo)
"#;

/// `settle`: what a completed response leaves: its tokens in the key's token window, and this
/// instance's whole spend for the key and period (written whole, so writing it again is
/// harmless and a restarted Redis is refilled by the next write), kept until `expire_at`.
///
/// KEYS: 2, 3 and 4 of [`ADMIT`]. ARGV: 1 tokens (0 = none), 2 instance id, 3 pico-dollars
/// ("" = no budget), 4 the spend's expiry (unix seconds).
pub const SETTLE: &str = r#"
local tokens = tonumber(ARGV[1])
if tokens > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local second = tostring(math.floor(now / 1000000))
  redis.call('HINCRBY', KEYS[2], second, tokens)
  redis.call('HINCRBY', KEYS[2], 'sum', tokens)
  redis.call('HSET', KEYS[2], 'newest', now)
  redis.call('ZADD', KEYS[1], now, second)
  redis.call('PEXPIRE', KEYS[1], 62000)
  redis.call('PEXPIRE', KEYS[2], 62000)
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  redis.call('EXPIREAT', KEYS[3], ARGV[4])
end
return 1
"#;

/// `fail`: one failure from an address (a wrong key, or a login attempt counted before it is
/// verified), in a true sliding window of `lockout_window_secs`; the failure that reaches the
/// limit locks the address and ends the streak. A locked address counts nothing.
///
/// KEYS: 1 the failures (zset: member → time), 2 the lock. ARGV: 1 the limit, 2 the window (µs),
/// 3 the lock's length (ms), 4 this failure's unique member.
///
/// Returns {state, ms}: {0, failures in the window}, {1, ms the lock has left} when it was
/// locked already, {2, unlock time in unix ms} when this failure locked it.
pub const FAIL: &str = r#"
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {1, left} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[2]) / 1000) + 1000)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return {2, math.floor(now / 1000) + tonumber(ARGV[3])}
end
return {0, n}
"#;

/// `live`: the entries of an index (zset: member → end time in unix ms) that have not ended,
/// dropping those that have: the locked addresses, or the targets cooling down.
///
/// KEYS: 1 the index. ARGV: 1 the most returned (those ending last first).
/// Returns {now in unix ms, member, end ms, member, end ms, …}.
pub const LIVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {now}
local live = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', now + 1, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
for i = 1, #live do out[#out + 1] = live[i] end
return out
"#;

/// `cool`: a target enters a cooldown of `ARGV[2]` ms from the server's now.
///
/// KEYS: 1 the cooldowns index. ARGV: 1 the target, 2 the cooldown (ms).
pub const COOL: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + wait, ARGV[1])
if redis.call('PTTL', KEYS[1]) < wait then redis.call('PEXPIRE', KEYS[1], wait) end
return now + wait
"#;
