package redisengine

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each runs atomically in Redis, so everything one of
// them reads and writes is one step for every node: that is what makes a
// pairing exclusive (no session is ever in two matches) and lets exactly
// one reaper act on a dead node. They build their keys from the prefix in
// ARGV[1]; every key lives in one Redis (not Redis Cluster).
//
// Keys, under the prefix:
//
//	s:<id>             hash: the session record (fields below)
//	tok:<sha256 hex>   string: the session id of a resume token
//	sessions           set: every live session id (online count)
//	nodesess:<node>    set: the sessions a node holds
//	nodes              zset: node -> lease expiry (ms, Redis clock)
//	renewed            hash: node -> last lease renewal (ms)
//	beat               string: last lease renewal or reap by any node (ms)
//	epoch              string: set once; another value means Redis lost its data
//	orphans            zset: session of a dead or drained node -> deadline (ms)
//	recent:<id>        list: the last RecentPartners partners, newest first
//	rep:<id>           set: sessions id reported
//	pool:<mode>:<0|1>:t:<tag>  set: waiting sessions with that interest
//	pool:<mode>:<0|1>:any      set: waiting sessions that accept anyone
//	pool:<mode>:<0|1>:all      set: every waiting session (counts)
//
// (<0|1>: the shadow pool or not.) Record fields: node, tok, ic and ia
// (identity), ck (client key), hf, mode, tags, ro, io (the last find), st
// (idle, waiting, matched), ws (waiting since, ms); while waiting pk
// (<mode>:<0|1>), any and stl (settled); while matched m, p, pic and pia
// (partner identity), role and cm (common interests, newline-separated
// like tags).
const prelude = `
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function split(s)
  local out = {}
  if s and s ~= '' then
    for x in string.gmatch(s, '[^\n]+') do out[#out + 1] = x end
  end
  return out
end
local function unpool(id, pk, tags, any)
  if not pk or pk == '' then return end
  local base = P .. 'pool:' .. pk
  if tags and tags ~= '' then
    for _, tag in ipairs(split(tags)) do redis.call('SREM', base .. ':t:' .. tag, id) end
  end
  if any == '1' then redis.call('SREM', base .. ':any', id) end
  redis.call('SREM', base .. ':all', id)
end
-- remember puts o first in x's recent partners, n kept. A list of n or
-- fewer needs no LTRIM (n <= 0 keeps the LTRIM, whatever it does).
local function remember(x, o, n, ttl)
  local k = P .. 'recent:' .. x
  if redis.call('LPUSH', k, o) > n then redis.call('LTRIM', k, 0, n - 1) end
  redis.call('EXPIRE', k, ttl)
end
local function unmatch(x)
  local k = P .. 's:' .. x
  redis.call('HSET', k, 'st', 'idle')
  redis.call('HDEL', k, 'm', 'p', 'pic', 'pia', 'role', 'cm')
end
local function live_nodes(now)
  return redis.call('ZRANGEBYSCORE', P .. 'nodes', '(' .. now, '+inf')
end
local function alive(nd, now)
  if not nd or nd == '' then return false end
  local exp = redis.call('ZSCORE', P .. 'nodes', nd)
  return exp and tonumber(exp) > now
end
-- elsewhere: the record r (HMGET ... 'node' first) belongs to another live
-- node than node (claimed away): this node must not act for it.
local function elsewhere(rnode, node)
  return rnode and rnode ~= node and alive(rnode, now_ms())
end
-- moved_to is the answer for a session another live node holds now:
-- {'moved', that node, its partner, the partner's node}.
local function moved_to(id)
  local r = redis.call('HMGET', P .. 's:' .. id, 'node', 'p')
  local pnode = ''
  if r[2] then pnode = redis.call('HGET', P .. 's:' .. r[2], 'node') or '' end
  return {'moved', r[1] or '', r[2] or '', pnode}
end
-- orphan makes id an orphan due at deadline: out of the pool (nobody may
-- meet a session without a live node; the node that claims it queues it
-- again), its record kept for a claim.
local function orphan(id, deadline, nx)
  local k = P .. 's:' .. id
  local r = redis.call('HMGET', k, 'st', 'pk', 'tags', 'any')
  if r[1] == 'waiting' then
    unpool(id, r[2], r[3], r[4])
    redis.call('HDEL', k, 'pk', 'any', 'stl')
  end
  if nx then
    redis.call('ZADD', P .. 'orphans', 'NX', deadline, id)
  else
    redis.call('ZADD', P .. 'orphans', deadline, id)
  end
end
-- end_match ends match for x, and for its partner p if p is still in it:
-- both remember each other. Returns p's node if p was still in it, else ''.
local function end_match(x, p, match, n, ttl)
  unmatch(x)
  if p == '' then return '' end
  remember(x, p, n, ttl)
  local pr = redis.call('HMGET', P .. 's:' .. p, 'm', 'node')
  remember(p, x, n, ttl)
  if pr[1] == match then
    unmatch(p)
    return pr[2] or ''
  end
  return ''
end
-- end_fields reads what end_session needs of id's record.
local function end_fields(id)
  return redis.call('HMGET', P .. 's:' .. id, 'st', 'm', 'p', 'pk', 'tags', 'any', 'tok', 'node')
end
-- end_session deletes everything of id. If it was still in a match its
-- partner is in too, the partner leaves it: returns the partner, the match
-- and the partner's node ('' when none). r: end_fields(id), if the caller
-- has just read it.
local function end_session(id, n, ttl, r)
  local k = P .. 's:' .. id
  r = r or end_fields(id)
  local partner, match, pnode = '', '', ''
  if r[1] == 'waiting' then unpool(id, r[4], r[5], r[6]) end
  if r[1] == 'matched' and r[3] then
    local pr = redis.call('HMGET', P .. 's:' .. r[3], 'm', 'node')
    if pr[1] == r[2] then
      unmatch(r[3])
      remember(r[3], id, n, ttl)
      partner, match, pnode = r[3], r[2], pr[2] or ''
    end
  end
  if r[7] then redis.call('DEL', P .. 'tok:' .. r[7]) end
  if r[8] then redis.call('SREM', P .. 'nodesess:' .. r[8], id) end
  redis.call('DEL', k, P .. 'recent:' .. id, P .. 'rep:' .. id)
  redis.call('SREM', P .. 'sessions', id)
  redis.call('ZREM', P .. 'orphans', id)
  return {id, partner, match, pnode}
end
-- beat notes that a node reached Redis now. If nobody did for half a lease
-- or more, Redis itself was unreachable (or down): the leases that ran out
-- meanwhile say nothing about the nodes, so every lease is extended rather
-- than reaped, by a lease and the time a node may take to notice Redis is
-- back (ARGV[2] of the caller, ms). Returns true then.
local function beat(now, ttl, back)
  local last = redis.call('GET', P .. 'beat')
  redis.call('SET', P .. 'beat', now)
  if last and now - tonumber(last) > ttl / 2 then
    for _, nd in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
      redis.call('ZADD', P .. 'nodes', 'GT', now + ttl + back, nd)
    end
    return true
  end
  return false
end
-- pairing_of is a matched record's view of its match, for Earlier.
local function pairing_of(r)
  local pnode = redis.call('HGET', P .. 's:' .. r[3], 'node') or ''
  return {'earlier', r[2], r[3], pnode, r[4] or '', r[6] or '', r[7] or '', split(r[5])}
end
`

// The bodies of the calls a batch takes (Engine.Do): each runs in
// batchScript (batch.go) as a function of its own ARGV, laid out as a
// script's (ARGV[1] the prefix), after the prelude and batchPrelude,
// which the batch has once. Their locals are the function's; P and the
// preludes' functions are shared.

// queueBody pairs a seeker or puts it in the pool (Engine.Queue).
// ARGV: prefix, id, node, mode, shadow (0/1), anyone (0/1), settled (0/1),
// ident client, ident addr, wait since (ms), relay only (0/1), match id
// for a pairing, the seeker's role in it, a random offset, record TTL (s),
// interests only (0/1, or empty when the ticket does not tell), n, n tags
// in the seeker's order, the same n in the order to try them.
//
// Returns {'earlier', match, partner, partner node, role, partner ident
// client, addr, common}, {'paired', partner, partner node, partner ident
// client, addr, common (seeker's order), common (partner's order)} or
// {'waiting'}; moved_to's answer if another live node holds the session
// now.
const queueBody = `
local id, node, mode, shadow = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local anyone, settled = ARGV[6] == '1', ARGV[7] == '1'
local ic, ia, ws, ro = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local match, role, start, ttl = ARGV[12], ARGV[13], tonumber(ARGV[14]), tonumber(ARGV[15])
local io = ARGV[16]
local n = tonumber(ARGV[17])
local tags, order = {}, {}
for i = 1, n do tags[i] = ARGV[17 + i]; order[i] = ARGV[17 + n + i] end

local rk = P .. 's:' .. id
local cur = redis.call('HMGET', rk, 'st', 'm', 'p', 'role', 'cm', 'pic', 'pia', 'pk', 'tags', 'any', 'node', 'stl')
if elsewhere(cur[11], node) then return moved_to(id) end
if cur[1] == 'matched' then return pairing_of(cur) end
unpool(id, cur[8], cur[9], cur[10])
-- What of the record is to go, as read above (nothing in between writes
-- those fields): an HDEL of fields all absent is skipped.
local had_pool = cur[8] or cur[10] or cur[12]
local had_match = cur[2] or cur[3] or cur[4] or cur[5] or cur[6] or cur[7]

-- now: read at the first lease to check (a queue that finds no candidate
-- needs no TIME), then the same for the rest of the call.
local now
local pk = mode .. ':' .. shadow
local base = P .. 'pool:' .. pk
-- avoided: b is one of a's recent partners (recent_too) or a reported b;
-- the partner just left, the likeliest, is checked first.
local function avoided(a, b, recent_too)
  if recent_too and redis.call('LPOS', P .. 'recent:' .. a, b) then return true end
  return redis.call('SISMEMBER', P .. 'rep:' .. a, b) == 1
end
-- drawn: candidates seen, in the order drawn, for the second pass.
local drawn, seen = {}, {}
local function pick(key)
  local ms = redis.call('SRANDMEMBER', key, 64)
  local cnt = #ms
  for i = 0, cnt - 1 do
    local c = ms[((start + i) % cnt) + 1]
    if c ~= id and not seen[c] then
      seen[c] = true
      local r = redis.call('HMGET', P .. 's:' .. c, 'st', 'node', 'stl', 'pk', 'tags', 'any', 'ic', 'ia')
      if not r[1] then
        redis.call('SREM', key, c) -- the session ended: a ghost entry
      elseif r[1] == 'waiting' and r[4] == pk then
        local exp = lease(r[2] or '')
        if exp then now = now or now_ms() end
        if exp and exp > now then
          r.id = c
          drawn[#drawn + 1] = r
          if not avoided(id, c, true) and not avoided(c, id, true) then return r end
        end
      end
    end
  end
  return nil
end
local found = nil
for i = 1, n do
  found = pick(base .. ':t:' .. order[i])
  if found then break end
end
if not found and anyone then found = pick(base .. ':any') end
if not found and settled then
  for _, r in ipairs(drawn) do
    if r[3] == '1' and not avoided(id, r.id, false) and not avoided(r.id, id, false) then
      found = r
      break
    end
  end
end

if found then
  local c = found.id
  unpool(c, found[4], found[5], found[6])
  -- The interests in common, in each side's order (none if either has none).
  local mine, theirs = {}, {}
  if n > 0 and found[5] and found[5] ~= '' then
    local ctags = split(found[5])
    local inc, ins = {}, {}
    for _, x in ipairs(ctags) do inc[x] = true end
    for _, x in ipairs(tags) do ins[x] = true end
    for _, x in ipairs(tags) do if inc[x] then mine[#mine + 1] = x end end
    for _, x in ipairs(ctags) do if ins[x] then theirs[#theirs + 1] = x end end
  end
  local crole = 'offerer'
  if role == 'offerer' then crole = 'answerer' end
  redis.call('HSET', rk, 'node', node, 'ic', ic, 'ia', ia, 'hf', '1', 'mode', mode, 'tags', table.concat(tags, '\n'),
    'ro', ro, 'ws', ws, 'st', 'matched', 'm', match, 'p', c, 'pic', found[7] or '', 'pia', found[8] or '',
    'role', role, 'cm', table.concat(mine, '\n'))
  if had_pool then redis.call('HDEL', rk, 'pk', 'any', 'stl') end
  if io ~= '' then redis.call('HSET', rk, 'io', io) end
  local ck = P .. 's:' .. c
  redis.call('HSET', ck, 'st', 'matched', 'm', match, 'p', id, 'pic', ic, 'pia', ia,
    'role', crole, 'cm', table.concat(theirs, '\n'))
  redis.call('HDEL', ck, 'pk', 'any', 'stl')
  redis.call('EXPIRE', rk, ttl)
  redis.call('EXPIRE', ck, ttl)
  redis.call('SADD', P .. 'sessions', id)
  redis.call('SADD', P .. 'nodesess:' .. node, id)
  return {'paired', c, found[2], found[7] or '', found[8] or '', mine, theirs}
end

for i = 1, n do redis.call('SADD', base .. ':t:' .. tags[i], id) end
local any = '0'
if anyone then
  redis.call('SADD', base .. ':any', id)
  any = '1'
end
redis.call('SADD', base .. ':all', id)
local stl = '0'
if settled then stl = '1' end
redis.call('HSET', rk, 'node', node, 'ic', ic, 'ia', ia, 'hf', '1', 'mode', mode, 'tags', table.concat(tags, '\n'),
  'ro', ro, 'ws', ws, 'st', 'waiting', 'pk', pk, 'any', any, 'stl', stl)
if had_match then redis.call('HDEL', rk, 'm', 'p', 'pic', 'pia', 'role', 'cm') end
if io ~= '' then redis.call('HSET', rk, 'io', io) end
redis.call('EXPIRE', rk, ttl)
redis.call('SADD', P .. 'sessions', id)
redis.call('SADD', P .. 'nodesess:' .. node, id)
return {'waiting'}
`

// withdrawBody takes a session out of the pool (Engine.Withdraw).
// ARGV: prefix, id, node. Returns what queueScript does for earlier, or
// {'idle'}.
const withdrawBody = `
local rk = P .. 's:' .. ARGV[2]
local cur = redis.call('HMGET', rk, 'st', 'm', 'p', 'role', 'cm', 'pic', 'pia', 'pk', 'tags', 'any', 'node')
if elsewhere(cur[11], ARGV[3]) then return {'idle'} end
if cur[1] == 'matched' then return pairing_of(cur) end
if cur[1] == 'waiting' then
  unpool(ARGV[2], cur[8], cur[9], cur[10])
  redis.call('HSET', rk, 'st', 'idle')
  redis.call('HDEL', rk, 'pk', 'any', 'stl')
end
return {'idle'}
`

// endMatchBody ends a match from one side (Engine.EndMatch). ARGV:
// prefix, match, id, partner, recent partners kept, record TTL (s).
// Returns {'gone'} or {'ok', partner's node if the partner was still in
// the match, else an empty string}.
const endMatchBody = `
local match, id, partner = ARGV[2], ARGV[3], ARGV[4]
local n, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local r = redis.call('HMGET', P .. 's:' .. id, 'st', 'm')
if r[1] ~= 'matched' or r[2] ~= match then return {'gone'} end
return {'ok', end_match(id, partner, match, n, ttl)}
`

// registerBody records a session of this node (Engine.Register). ARGV:
// prefix, id, node, token hash, ident client, addr, client key, has find,
// mode, tags, relay only, interests only, state, match, partner, partner
// ident client, addr, wait since (ms), record TTL (s), recent partners
// kept.
//
// A new record takes the state given (waiting counts as idle until Queue
// puts it in the pool). An existing one (the hub registers its sessions
// again after an outage) is reconciled with it: the hub knows best whether
// its session is still in a match, so a match the hub no longer has ends
// (its partner's node is told), and a pool entry of a session the hub has
// idle goes; a match the hub has that Redis does not is reported gone.
//
// Returns {'ok'}, moved_to's answer (another live node holds the session
// now),
// {'gone'} (the hub's match ended meanwhile) or {'ended', partner, match,
// partner's node} (Redis's match ended).
const registerBody = `
local id, node, tok = ARGV[2], ARGV[3], ARGV[4]
local st, match = ARGV[13], ARGV[14]
local ttl, n = tonumber(ARGV[19]), tonumber(ARGV[20])
local rk = P .. 's:' .. id
local old = redis.call('HMGET', rk, 'node', 'st', 'tok', 'm', 'p', 'pk', 'tags', 'any')
if elsewhere(old[1], node) then return moved_to(id) end
local out = {'ok'}
if not old[2] then
  -- A new record: all of it in one HSET.
  if st == 'waiting' then st = 'idle' end
  redis.call('HSET', rk, 'node', node, 'tok', tok, 'ic', ARGV[5], 'ia', ARGV[6], 'ck', ARGV[7], 'hf', ARGV[8],
    'mode', ARGV[9], 'tags', ARGV[10], 'ro', ARGV[11], 'io', ARGV[12], 'st', st, 'ws', ARGV[18])
  if st == 'matched' then
    redis.call('HSET', rk, 'm', match, 'p', ARGV[15], 'pic', ARGV[16], 'pia', ARGV[17])
  end
else
  redis.call('HSET', rk, 'node', node, 'tok', tok, 'ic', ARGV[5], 'ia', ARGV[6], 'ck', ARGV[7])
  if st == 'matched' then
    if old[2] ~= 'matched' or old[4] ~= match then out = {'gone'} end
  elseif old[2] == 'matched' then
    out = {'ended', old[5] or '', old[4] or '', end_match(id, old[5] or '', old[4] or '', n, ttl)}
  elseif old[2] == 'waiting' and st == 'idle' then
    unpool(id, old[6], old[7], old[8])
    redis.call('HSET', rk, 'st', 'idle')
    redis.call('HDEL', rk, 'pk', 'any', 'stl')
  end
end
if old[1] and old[1] ~= node then redis.call('SREM', P .. 'nodesess:' .. old[1], id) end
if old[3] and old[3] ~= tok then redis.call('DEL', P .. 'tok:' .. old[3]) end
redis.call('SET', P .. 'tok:' .. tok, id, 'EX', ttl)
redis.call('EXPIRE', rk, ttl)
redis.call('SADD', P .. 'nodesess:' .. node, id)
redis.call('SADD', P .. 'sessions', id)
redis.call('ZREM', P .. 'orphans', id)
return out
`

// claimScript moves the session of a resume token to this node
// (Engine.Claim). ARGV: prefix, token hash, node, record TTL (s). Returns
// {} for no such session, else {id, old node, '1' if the old node's lease
// is alive, partner's node, the record as HGETALL}.
var claimScript = redis.NewScript(prelude + `
local node, ttl = ARGV[3], tonumber(ARGV[4])
local id = redis.call('GET', P .. 'tok:' .. ARGV[2])
if not id then return {} end
local rk = P .. 's:' .. id
local old = redis.call('HGET', rk, 'node')
if not old then
  redis.call('DEL', P .. 'tok:' .. ARGV[2])
  return {}
end
local exp = redis.call('ZSCORE', P .. 'nodes', old)
local alive = '0'
if exp and tonumber(exp) > now_ms() then alive = '1' end
redis.call('HSET', rk, 'node', node)
redis.call('SREM', P .. 'nodesess:' .. old, id)
redis.call('SADD', P .. 'nodesess:' .. node, id)
redis.call('ZREM', P .. 'orphans', id)
redis.call('EXPIRE', rk, ttl)
redis.call('EXPIRE', P .. 'tok:' .. ARGV[2], ttl)
local pnode = ''
local p = redis.call('HGET', rk, 'p')
if p then pnode = redis.call('HGET', P .. 's:' .. p, 'node') or '' end
return {id, old, alive, pnode, redis.call('HGETALL', rk)}
`)

// endBody ends a session for good (Engine.End). ARGV: prefix, id,
// recent partners kept, record TTL (s), node. Returns {end_session's
// result, live nodes}, or {} if the session lives on another node now
// (claimed away: that node ends it).
const endBody = `
local f = end_fields(ARGV[2])
if f[8] and f[8] ~= ARGV[5] then return {} end
local r = end_session(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), f)
return {r, live_nodes(now_ms())}
`

// blockBody records a report (Engine.Block). ARGV: prefix, reporter,
// reported, most kept, record TTL (s).
const blockBody = `
local k = P .. 'rep:' .. ARGV[2]
redis.call('SADD', k, ARGV[3])
if redis.call('SCARD', k) > tonumber(ARGV[4]) then
  local x = redis.call('SRANDMEMBER', k)
  if x == ARGV[3] then x = redis.call('SRANDMEMBER', k) end
  if x ~= ARGV[3] then redis.call('SREM', k, x) end
end
redis.call('EXPIRE', k, tonumber(ARGV[5]))
return 1
`

// countsScript: {online, video, video shadow, text, text shadow, nodes}.
// ARGV: prefix.
var countsScript = redis.NewScript(prelude + `
local function w(pk) return redis.call('SCARD', P .. 'pool:' .. pk .. ':all') end
return {redis.call('SCARD', P .. 'sessions'), w('video:0'), w('video:1'), w('text:0'), w('text:1'),
  #live_nodes(now_ms())}
`)

// renewScript renews this node's lease. ARGV: prefix, node, lease TTL
// (ms), a new epoch, the time to come back after an outage (ms), fresh
// (1: the first renewal of this process), resume grace (ms). Returns {1 if
// the lease was still there, live nodes count, epoch, sessions orphaned}:
// the epoch key is set once, so a different one means Redis lost its data.
//
// Fresh, the node has no session yet: any Redis still lists under its name
// belong to an earlier process with the same node id that died (a restart
// quicker than the lease would hide that death from every reaper). They
// become orphans, as a reaper would make them.
var renewScript = redis.NewScript(prelude + `
local now, ttl = now_ms(), tonumber(ARGV[3])
beat(now, ttl, tonumber(ARGV[5]))
local epoch = redis.call('GET', P .. 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', P .. 'epoch', epoch)
end
local orphaned = 0
if ARGV[6] == '1' then
  local k = P .. 'nodesess:' .. ARGV[2]
  local last = tonumber(redis.call('HGET', P .. 'renewed', ARGV[2]) or now)
  for _, id in ipairs(redis.call('SMEMBERS', k)) do
    orphan(id, last + tonumber(ARGV[7]), true)
    orphaned = orphaned + 1
  end
  redis.call('DEL', k)
end
local had = redis.call('ZSCORE', P .. 'nodes', ARGV[2])
redis.call('ZADD', P .. 'nodes', now + ttl, ARGV[2])
redis.call('HSET', P .. 'renewed', ARGV[2], now)
local alive = 0
if had then alive = 1 end
return {alive, #live_nodes(now), epoch, orphaned}
`)

// reapScript takes the nodes whose lease ran out out of the lease set and
// moves their sessions to the orphans, each due last renewal + resume
// grace. Only the node whose script removes a lease acts on it. ARGV:
// prefix, resume grace (ms), lease TTL (ms), the time to come back after
// an outage (ms). Returns the nodes reaped.
var reapScript = redis.NewScript(prelude + `
local now, grace, ttl = now_ms(), tonumber(ARGV[2]), tonumber(ARGV[3])
if beat(now, ttl, tonumber(ARGV[4])) then return {} end
local dead = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now)
for _, nd in ipairs(dead) do
  redis.call('ZREM', P .. 'nodes', nd)
  local last = tonumber(redis.call('HGET', P .. 'renewed', nd) or now)
  redis.call('HDEL', P .. 'renewed', nd)
  local k = P .. 'nodesess:' .. nd
  for _, id in ipairs(redis.call('SMEMBERS', k)) do orphan(id, last + grace, true) end
  redis.call('DEL', k)
end
return dead
`)

// orphansScript ends the orphans that are due, at most ARGV[4] of them.
// ARGV: prefix, recent partners kept, record TTL (s), limit. Returns
// {{end_session's result}..., live nodes}.
var orphansScript = redis.NewScript(prelude + `
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', P .. 'orphans', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(due) do
  out[#out + 1] = end_session(id, tonumber(ARGV[2]), tonumber(ARGV[3]))
end
return {out, live_nodes(now)}
`)

// leaveScript takes this node out of the cluster (Engine.Close). With
// drain its sessions become orphans due in the resume grace; without, they
// end now. ARGV: prefix, node, drain (0/1), resume grace (ms), recent
// partners kept, record TTL (s). Returns {{end_session's result}..., live
// nodes, {session, its partner's node}...}: no results with drain, and
// partners only with drain (those in a match with a partner on another
// node).
var leaveScript = redis.NewScript(prelude + `
local node, drain, grace = ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local now = now_ms()
redis.call('ZREM', P .. 'nodes', node)
redis.call('HDEL', P .. 'renewed', node)
local k = P .. 'nodesess:' .. node
local out, partners = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', k)) do
  if drain then
    orphan(id, now + grace, false)
    local r = redis.call('HMGET', P .. 's:' .. id, 'st', 'p')
    if r[1] == 'matched' and r[2] then
      local pn = redis.call('HGET', P .. 's:' .. r[2], 'node')
      if pn and pn ~= node then partners[#partners + 1] = {id, pn} end
    end
  else
    out[#out + 1] = end_session(id, tonumber(ARGV[5]), tonumber(ARGV[6]))
  end
end
redis.call('DEL', k)
return {out, live_nodes(now), partners}
`)
