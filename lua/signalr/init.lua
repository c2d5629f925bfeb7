-- signalr: a SignalR client for Lua 5.4, 5.3, 5.1 and LuaJIT (`local x <close>`
-- needs 5.4). The file is plain Lua 5.1 syntax so that every one parses it.
--
-- The public API (see API.md) in pure Lua over the private C module
-- signalr.core: the scheduler (spawn/run/poll/sleep and the waits of
-- start/stop/invoke), the builder with its validation, and the connection
-- object with its handlers.
--
-- Waiting: a wait creates a waiter whose continuation `k` is handed to the
-- core. Inside a coroutine managed by signalr, the coroutine yields and `k`
-- resumes it (k runs inside poll, from a C callback). Anywhere else the wait
-- pumps core.poll until `k` has run. Handlers and event callbacks each run in
-- a new managed coroutine, so they may wait too.

local core = require("signalr.core")

local type, select, error, pcall, xpcall, tostring = type, select, error, pcall, xpcall, tostring
local setmetatable, getmetatable, next, pairs, ipairs = setmetatable, getmetatable, next, pairs, ipairs
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_running, co_status, co_isyieldable = coroutine.running, coroutine.status, coroutine.isyieldable
local traceback = debug.traceback
local HUGE, floor = math.huge, math.floor
local break_dispatch = core.break_dispatch

-- Lua 5.1 and LuaJIT (without its 5.2 extensions) have no table.pack and a
-- global unpack.
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

-- An integer: math.type on 5.3+. Lua 5.1 and LuaJIT have doubles only, so
-- there a number with an integral value a double holds exactly (|n| <= 2^53)
-- counts as one, as the binding counts it when sending.
local math_type = math.type
local MAX_EXACT = 2 ^ 53
local function is_integer(n)
  if math_type then return math_type(n) == "integer" end
  return type(n) == "number" and n == floor(n) and n >= -MAX_EXACT and n <= MAX_EXACT
end

-- Lua 5.1's xpcall passes no arguments to the function (5.2+ and LuaJIT do).
if not select(2, xpcall(function(a) return a end, function(e) return e end, true)) then
  local xpcall51 = xpcall
  xpcall = function(f, msgh, ...)
    local n, args = select("#", ...), { ... }
    return xpcall51(function() return f(unpack(args, 1, n)) end, msgh)
  end
end

-- Whether a wait can yield the running coroutine. Lua 5.1 has no
-- coroutine.isyieldable and cannot yield across a C function (pcall,
-- xpcall, table.sort, string.gsub, a metamethod or iterator called by the
-- VM): there, walk the coroutine's frames and refuse to yield when a C
-- function is among them, so the wait pumps events instead (see await).
-- The iterator of a generic for (`for x in s:items()`) is called by the VM
-- as a C call too; 5.1 names it "(for generator)". A metamethod is such a
-- call as well but has no mark: a wait there raises "attempt to yield
-- across metamethod/C-call boundary" on 5.1 (docs/API.md, Lua versions).
-- LuaJIT 2.1 has coroutine.isyieldable and yields across all of these.
if not co_isyieldable then
  local getinfo = debug.getinfo
  co_isyieldable = function()
    if co_running() == nil then return false end
    local level = 2
    while true do
      local info = getinfo(level, "Sn")
      if info == nil then return true end
      if info.what == "C" or info.name == "(for generator)" then return false end
      level = level + 1
    end
  end
end
-- Whether pcall can be yielded across (5.2+ and LuaJIT; not 5.1).
local PCALL_YIELDS
do
  local co = co_create(function() return pcall(co_yield) end)
  co_resume(co)
  PCALL_YIELDS = co_status(co) == "suspended"
end

local M = {}

M.VERSION = core.VERSION
M.null = core.null

---------------------------------------------------------------------------
-- errors
---------------------------------------------------------------------------

local error_mt = core.error_mt

--- A new error object (not raised): { kind = ..., message = ..., status = ... }.
local function new_error(kind, message, status)
  return setmetatable({ kind = kind, message = message, status = status }, error_mt)
end
M.new_error = new_error

--- true when v is an error object of signalr (of the given kind, if any).
function M.is_error(v, kind)
  return type(v) == "table" and getmetatable(v) == error_mt and (kind == nil or v.kind == kind)
end

local function usage(fmt, ...)
  error(new_error("usage", fmt:format(...)), 0)
end

-- Raise err, an error object of a call that waited, as error(obj, level)
-- would place a string: err.where is the caller's "file:line" (level
-- counts from raise's caller, 1 = that function's caller) and
-- err.traceback the stack from there, so an error reaching the top level
-- or a log says where it came from.
local THIS_SOURCE = debug.getinfo(1, "S").source

local function raise(err, level)
  if type(err) == "table" and getmetatable(err) == error_mt and rawget(err, "where") == nil then
    -- the first frame with a line outside this file (a tail call or pcall
    -- in between has none)
    for lvl = level + 2, level + 12 do
      local info = debug.getinfo(lvl, "Sl")
      if not info then break end
      if info.currentline > 0 and info.source ~= THIS_SOURCE then
        err.where = info.short_src .. ":" .. info.currentline
        break
      end
    end
    err.traceback = traceback("", level + 2)
  end
  error(err, 0)
end

---------------------------------------------------------------------------
-- values
---------------------------------------------------------------------------

local array_mt, map_mt, binary_mt = core.array_mt, core.map_mt, core.binary_mt

--- Mark t (default: a new table) as an array; returns it.
function M.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then usage("signalr.array: expected a table, got %s", type(t)) end
  return setmetatable(t, array_mt)
end

--- Mark t (default: a new table) as a map/object; returns it.
function M.map(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then usage("signalr.map: expected a table, got %s", type(t)) end
  return setmetatable(t, map_mt)
end

--- Wrap bytes as binary data (a userdata, so # works on every Lua): b.data
--- and tostring(b) give the bytes, #b their count.
function M.binary(s)
  if type(s) ~= "string" then usage("signalr.binary: expected a string, got %s", type(s)) end
  return core.binary(s)
end

function M.is_array(v) return type(v) == "table" and getmetatable(v) == array_mt end
function M.is_map(v) return type(v) == "table" and getmetatable(v) == map_mt end
function M.is_binary(v) return type(v) == "userdata" and getmetatable(v) == binary_mt end

---------------------------------------------------------------------------
-- logging
---------------------------------------------------------------------------

local LEVELS = { trace = 0, debug = 1, information = 2, warning = 3, error = 4, critical = 5, none = 6 }

local function stderr_sink(level, message)
  io.stderr:write(os.date("%H:%M:%S"), " signalr ", level, ": ", message, "\n")
end

-- A logger: { level = number, name = level name, fn = function(level, message) }.
local function new_logger(name, fn)
  return { level = LEVELS[name], name = name, fn = fn or stderr_sink }
end

-- Used by spawn's error reports and by builders without configure_logging.
local default_logger = new_logger("warning")

local function log(logger, level, message)
  if LEVELS[level] < logger.level or logger.level >= LEVELS.none then return end
  local ok, err = pcall(logger.fn, level, message)
  if not ok then
    io.stderr:write("signalr: the log function failed: ", tostring(err), "\n")
  end
end

local function check_logging(level, fn, where)
  if type(level) == "function" and fn == nil then level, fn = "information", level end
  if type(level) ~= "string" or LEVELS[level] == nil then
    usage("%s: unknown log level %s (use trace, debug, information, warning, error, critical or none)",
      where, tostring(level))
  end
  if fn ~= nil and type(fn) ~= "function" then
    usage("%s: the log sink must be a function, got %s", where, type(fn))
  end
  return level, fn
end

--- signalr.configure_logging(level [, fn]) or (fn): the default logging of
--- connections built afterwards without their own, and of errors raised in
--- coroutines started with spawn. Default: "warning" to stderr.
function M.configure_logging(level, fn)
  level, fn = check_logging(level, fn, "signalr.configure_logging")
  default_logger = new_logger(level, fn)
end

---------------------------------------------------------------------------
-- scheduler
---------------------------------------------------------------------------

-- coroutine -> true, or a function(err, co) that reports its error
local managed = setmetatable({}, { __mode = "k" })
-- managed coroutines parked in a wait (or rescheduled after a plain yield)
local waiting = setmetatable({}, { __mode = "k" })
-- what await() yields, to tell its yields from a plain coroutine.yield()
local WAIT = setmetatable({}, { __name = "signalr.wait" })

local function report_spawn_error(err, co)
  log(default_logger, "error", "error in a coroutine started by signalr.spawn: " .. traceback(co, tostring(err)))
end

local resume

-- What a pooled coroutine yields when its job is done (see start_pooled).
local IDLE = setmetatable({}, { __name = "signalr.idle" })
-- Idle coroutines for handler and callback jobs. Most handlers never wait,
-- and creating a coroutine per server call cost more than the rest of its
-- dispatch, so a job that ran to its end returns its coroutine here.
local pool, npool, POOL_MAX = {}, 0, 32
-- One more idle coroutine beside the pool, for the dispatch of server
-- calls alone: taking and giving it back is an upvalue write each way,
-- where the pool costs a counter and a table slot (nil while in use: a
-- handler that polls dispatches the next call in another coroutine).
local spare = nil

-- A plain coroutine.yield() inside a managed coroutine: go on at the next
-- turn of the loop.
local function reschedule(co)
  waiting[co] = true
  core.timer(0, function()
    waiting[co] = nil
    resume(co)
  end)
end

-- What a resume returned: pool the coroutine when its job is done, report
-- its error, or keep it waiting.
local function resumed(co, ok, tok)
  if not ok then
    local on_error = managed[co]
    managed[co], waiting[co] = nil, nil
    if type(on_error) ~= "function" then on_error = report_spawn_error end
    on_error(tok, co)
  elseif tok == IDLE then
    if npool < POOL_MAX then
      managed[co] = true -- see take_pooled
      npool = npool + 1
      pool[npool] = co
    else
      managed[co] = nil
    end
  elseif co_status(co) == "dead" then
    managed[co] = nil
  elseif tok ~= WAIT then
    reschedule(co)
  end
end

function resume(co, ...)
  return resumed(co, co_resume(co, ...))
end

-- Start fn(...) in a new managed coroutine; on_error(err, co) reports errors.
local function start_managed(on_error, fn, ...)
  local co = co_create(fn)
  managed[co] = on_error or true
  resume(co, ...)
  return co
end

-- The body of a pooled coroutine: run each job given by a resume, then
-- yield IDLE. A job's arguments live only in call's frame, so an idle
-- coroutine keeps nothing of its last job alive.
local function call(fn, ...)
  return fn(...)
end

local function pooled_body()
  while true do
    call(co_yield(IDLE))
  end
end

-- An idle pooled coroutine, or a new one. Idle ones stay in managed (as
-- true: they pin no job's error handler), so a job that neither fails nor
-- waits costs no write to that weak table (invocation_dispatcher).
local function take_pooled()
  local co
  if npool > 0 then
    co = pool[npool]
    pool[npool] = nil
    npool = npool - 1
  else
    co = co_create(pooled_body)
    co_resume(co) -- runs to its first yield: IDLE
    managed[co] = true
  end
  return co
end

-- Like start_managed, for jobs whose coroutine nobody sees (server calls,
-- event callbacks): reuse an idle coroutine when there is one.
local function start_pooled(on_error, fn, ...)
  local co = take_pooled()
  managed[co] = on_error or true
  resumed(co, co_resume(co, fn, ...))
end

--- Run fn(...) in a managed coroutine at once, until its first wait.
function M.spawn(fn, ...)
  if type(fn) ~= "function" then usage("signalr.spawn: expected a function, got %s", type(fn)) end
  return start_managed(nil, fn, ...)
end

-- Lua 5.1 cannot yield across pcall: there, signalr's pcall (and the
-- xpcall around handlers) runs the function in a coroutine of its own
-- whose yields it passes on to the managed coroutine that called it, and
-- the answers back. nested[inner] is that caller; a wait in the inner
-- coroutine parks (and is resumed through) the managed one.
local nested = setmetatable({}, { __mode = "k" })

local function managed_root(co)
  while nested[co] do co = nested[co] end
  return co
end

-- What a nested coroutine's resume returned: its end (the results of
-- pcall), or a yield passed on to the caller.
local function nested_resumed(co, msgh, ok, ...)
  if not ok then
    nested[co] = nil
    if msgh then return false, msgh((...), co) end
    return false, (...)
  end
  if co_status(co) == "dead" then
    nested[co] = nil
    return true, ...
  end
  return nested_resumed(co, msgh, co_resume(co, co_yield(...)))
end

-- xpcall(f, msgh, ...) whose f may wait (yield) on every Lua; msgh(err, co)
-- gets the dead coroutine on 5.1 (for its traceback), nothing else on 5.2+.
local function yxpcall(f, msgh, ...)
  if PCALL_YIELDS then return xpcall(f, msgh, ...) end
  local co, main = co_running()
  if main or co == nil or not managed[managed_root(co)] or not co_isyieldable() then
    return xpcall(f, msgh, ...) -- cannot yield here anyway: its waits pump
  end
  local inner = co_create(f)
  nested[inner] = co
  return nested_resumed(inner, msgh, co_resume(inner, ...))
end

local function ypcall(f, ...)
  if PCALL_YIELDS then return pcall(f, ...) end
  return yxpcall(f, nil, ...)
end

--- signalr.pcall(f, ...): pcall whose f may wait in a managed coroutine on
--- every Lua. On 5.2+ it is pcall; on 5.1, whose pcall cannot be yielded
--- across, a wait under a plain pcall pumps events instead (docs/API.md).
M.pcall = ypcall

-- A waiter for the running code: w.k(a, b) completes it (once), await(w)
-- returns a, b. Every completion passes two values at most (err, result),
-- so they are kept as two fields rather than packed into a table.
local function waiter()
  local co, main = co_running()
  -- every field it will have, so that setting them never grows it
  local w = { co = false, done = false, parked = false, k = false, a = nil, b = nil }
  if nested[co] then co = managed_root(co) end
  if not main and managed[co] and co_isyieldable() then w.co = co end
  w.k = function(a, b)
    if w.done then return end
    w.done = true
    if w.parked then
      w.parked = false
      waiting[w.co] = nil
      -- 5.1: a yield from a metamethod fails and ends the coroutine (its
      -- error is reported then); nothing is left to resume
      if not PCALL_YIELDS and co_status(w.co) == "dead" then return end
      resume(w.co, a, b)
    else
      w.a, w.b = a, b
      -- a blocking wait: its poll returns now, not after a flood's backlog
      -- (a stream read this way paused the connection at every batch)
      if not w.co then break_dispatch() end
    end
  end
  return w
end

local function await(w)
  if not w.done then
    if w.co then
      w.parked = true
      waiting[w.co] = true
      return co_yield(WAIT)
    end
    repeat core.poll(HUGE) until w.done
  end
  return w.a, w.b
end

-- Wait until the core has room to send again (raises kind "closed").
local function wait_writable_core(c)
  local w = waiter()
  c:wait_writable(w.k)
  local err = await(w)
  if err ~= nil then raise(err, 3) end
end

local function busy(active)
  if next(waiting) ~= nil then return true end
  for conn in pairs(active) do
    if conn._c:state() ~= "disconnected" then return true end
  end
  return false
end

-- connections started and not yet seen disconnected (weak: each is also
-- held by the core while it is active)
local active = setmetatable({}, { __mode = "k" })

--- signalr.run(fn, ...): run fn in a managed coroutine and drive events until
--- it returns; its results are returned, its error re-raised.
--- signalr.run(): drive events until no connection is active and no managed
--- coroutine is waiting.
function M.run(fn, ...)
  if fn == nil then
    while busy(active) do core.poll(HUGE) end
    return
  end
  if type(fn) ~= "function" then usage("signalr.run: expected a function, got %s", type(fn)) end
  local res
  -- ypcall: on 5.1 fn's waits yield through it too
  start_managed(nil, function(...) res = pack(ypcall(fn, ...)) end, ...)
  while not res do core.poll(HUGE) end
  if res[1] then return unpack(res, 2, res.n) end
  error(res[2], 0)
end

--- Dispatch what is ready, waiting at most timeout seconds (default 0).
function M.poll(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then
    usage("signalr.poll: the timeout must be a number of seconds, got %s", type(timeout))
  end
  return core.poll(timeout or 0)
end

--- A descriptor that is readable whenever poll has work.
function M.fd()
  return core.fd()
end

--- Wait `seconds`: yields in a managed coroutine, pumps events elsewhere.
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds then
    usage("signalr.sleep: expected a number of seconds, got %s", tostring(seconds))
  end
  local w = waiter()
  core.timer(seconds, w.k)
  await(w)
end

---------------------------------------------------------------------------
-- client-to-server streams
---------------------------------------------------------------------------

-- A channel is a plain table with the core's channel metatable: the core
-- finds channels among a call's arguments, sends their stream ids instead,
-- and stores in each its connection (_c) and stream id (_id).
local Channel = core.channel_mt
Channel.__name = "signalr.Channel"
Channel.__index = Channel

--- A client-to-server stream: pass it as an argument of send, invoke or
--- stream, then write items and close it.
function M.channel()
  return setmetatable({ _closed = false }, Channel)
end

--- Send one item; waits while the send buffer is full.
function Channel:write(item)
  if self._closed then usage("channel:write: the channel is closed") end
  local c = self._c
  if c == nil then usage("channel:write: pass the channel to send, invoke or stream before writing") end
  while not c:upload_write(self._id, item) do wait_writable_core(c) end
end

--- End the stream; with err (a string or an error object), the hub method
--- sees the stream fail with that message. A second close does nothing.
function Channel:close(err)
  if self._closed then return end
  if err ~= nil then
    if type(err) == "table" and err.message ~= nil then err = err.message end
    err = tostring(err)
  end
  self._closed, self._error = true, err
  local c = self._c
  if c == nil or c:state() == "disconnected" then return end
  while not c:upload_close(self._id, err) do wait_writable_core(c) end
end

Channel.__close = function(self) self:close() end

function Channel:__tostring()
  return ("signalr.Channel (%s)"):format(self._closed and "closed" or (self._c and "open" or "not sent yet"))
end

---------------------------------------------------------------------------
-- connection
---------------------------------------------------------------------------

local Connection = { __name = "signalr.HubConnection" }
local methods = {}

Connection.__index = function(self, k)
  local m = methods[k]
  if m ~= nil then return m end
  if k == "state" then return self._c:state() end
  if k == "connection_id" then return self._c:connection_id() end
  return nil
end

function Connection.__tostring(self)
  return ("signalr.HubConnection (%s)"):format(self._c:state())
end

local function handler_traceback(e, co)
  if co then return traceback(co, tostring(e)) end
  return traceback(tostring(e), 2)
end

-- Each call of the server runs all handlers of its method, in order, in one
-- new managed coroutine; an error in one is logged and the others still run.
local function run_handlers(self, list, target, ...)
  for i = 1, #list do
    local ok, err = yxpcall(list[i], handler_traceback, ...)
    if not ok then
      log(self._logger, "error", ("handler for '%s' failed: %s"):format(target, err))
    end
  end
end

local function run_callbacks(self, list, what, ...)
  for i = 1, #list do
    local ok, err = yxpcall(list[i], handler_traceback, ...)
    if not ok then log(self._logger, "error", what .. " callback failed: " .. err) end
  end
end

local function coroutine_failed(self)
  return function(err, co)
    log(self._logger, "error", "signalr callback coroutine failed: " .. traceback(co, tostring(err)))
  end
end

-- Method names are case-insensitive; the server sends few distinct ones, so
-- their lower-case forms are kept (up to a bound) instead of made per call.
local lower_cache, lower_count = {}, 0

local function lower_name(target)
  local key = lower_cache[target]
  if key == nil then
    key = target:lower()
    if lower_count >= 1024 then lower_cache, lower_count = {}, 0 end
    lower_cache[target] = key
    lower_count = lower_count + 1
  end
  return key
end

-- How a method's only handler failing is reported (made once per handler
-- list: lists are replaced, never changed, when handlers come and go).
local function list_failed(self, list, target)
  local f = list.failed
  if f == nil then
    f = function(err, co)
      log(self._logger, "error", ("handler for '%s' failed: %s"):format(target, traceback(co, tostring(err))))
    end
    list.failed = f
  end
  return f
end

-- The hot path of receiving, one closure per connection (the core calls it
-- straight: no vararg layer between). Most methods have one handler, which
-- then runs straight in the pooled coroutine (its error ends the coroutine
-- and is reported from there), sparing an xpcall and two calls per message.
-- Its error handler is set only once it fails or waits: until then the
-- coroutine's `true` in managed is all that is read (waiter, yxpcall).
local function invocation_dispatcher(self)
  local handlers, c = self._handlers, self._c
  local take = c.take_call
  -- A flood of one method: the calls right behind this one that the core
  -- has ready (c:take_call) run in the same coroutine, each with the
  -- method's handlers as they are when it comes, sparing a resume, a yield
  -- and the core's callback per call. The first error or wait ends the run;
  -- the core delivers the rest as usual.
  local function next_call(key, target, ok, ...)
    if not ok then return false end
    local list = handlers[key]
    if not list then
      log(self._logger, "warning", ("no handler registered for the server's call to '%s'"):format(target))
    elseif not list[2] then
      list[1](...)
    else
      run_handlers(self, list, target, ...)
    end
    return true
  end
  local function more_calls(key, target)
    while next_call(key, target, take(c, target)) do end
  end
  local function run_calls(fn, key, target, ...)
    fn(...)
    return more_calls(key, target) -- a tail call: the first call's arguments go
  end
  return function(target, ...)
    local key = lower_cache[target] or lower_name(target)
    local list = handlers[key]
    if not list then -- TEST is inline; == nil calls luaV_equalobj (also below)
      log(self._logger, "warning", ("no handler registered for the server's call to '%s'"):format(target))
      return
    end
    local co = spare
    if co then
      spare = nil
    else
      co = take_pooled()
    end
    if not list[2] then
      local ok, tok = co_resume(co, run_calls, list[1], key, target, ...)
      if tok == IDLE and ok and not spare then -- resumed, inline
        spare = co -- its managed entry is still true (take_pooled)
      else
        managed[co] = list.failed or list_failed(self, list, target)
        resumed(co, ok, tok)
      end
    else
      managed[co] = self._on_coroutine_error
      resumed(co, co_resume(co, run_handlers, self, list, target, ...))
    end
  end
end

-- Client results: the server waits for one answer. Every handler of the
-- method runs, in order, in one managed coroutine (so a handler may wait);
-- then exactly one Completion goes back: the value a handler returned (nil
-- is null), "Client provided multiple results." when several returned a
-- value, else the error a handler raised.
local NO_RESULT = "Client didn't provide a result."

local function error_message(e)
  if type(e) == "table" and e.message ~= nil then return tostring(e.message) end
  return tostring(e)
end

local function result_traceback(e, co)
  return { err = e, trace = co and traceback(co, tostring(e)) or traceback(tostring(e), 2) }
end

local function answer(self, id, target, ok, value)
  local sent, why = self._c:complete(id, ok, value)
  if not sent then
    log(self._logger, "warning", ("the result of the server's call to '%s' was not sent: %s"):format(target, why))
  end
end

local function run_result_handlers(self, list, id, target, ...)
  local results, value, failure = 0, nil, nil
  for i = 1, #list do
    local ok, r = yxpcall(list[i], result_traceback, ...)
    if ok then
      if r ~= nil then results, value = results + 1, r end
    else
      failure = r.err
      log(self._logger, "error", ("handler for '%s' failed: %s"):format(target, r.trace))
    end
  end
  if results > 1 then
    log(self._logger, "error", ("multiple results provided for '%s'; sending an error to the server"):format(target))
    return answer(self, id, target, false, "Client provided multiple results.")
  end
  if results == 0 and failure ~= nil then return answer(self, id, target, false, error_message(failure)) end
  answer(self, id, target, true, value)
end

local function dispatch_result(self, id, target, ...)
  local list = self._handlers[lower_cache[target] or lower_name(target)]
  if list == nil then
    log(self._logger, "warning", ("no handler registered for the server's call to '%s', which waits for a result"):format(target))
    return answer(self, id, target, false, NO_RESULT)
  end
  start_pooled(self._on_coroutine_error, run_result_handlers, self, list, id, target, ...)
end

local function dispatch_close(self, err)
  active[self] = nil
  local list = self._close
  if #list > 0 then
    start_pooled(self._on_coroutine_error, run_callbacks, self, list, "on_close", err)
  end
end

local function dispatch_state(self, _, new)
  if new == "disconnected" then active[self] = nil end
end

local function dispatch_reconnecting(self, err)
  local list = self._reconnecting
  if #list > 0 then
    start_pooled(self._on_coroutine_error, run_callbacks, self, list, "on_reconnecting", err)
  end
end

local function dispatch_reconnected(self, connection_id)
  local list = self._reconnected
  if #list > 0 then
    start_pooled(self._on_coroutine_error, run_callbacks, self, list, "on_reconnected", connection_id)
  end
end

-- The core refused a send because a bounded buffer is full (the transport's
-- send queue, or the stateful-reconnect buffer): wait until it has room.
-- Raises kind "closed" when the connection ends first.
local function wait_writable(self)
  wait_writable_core(self._c)
end

--- Connect; returns when connected, raises the error object on failure.
function methods:start()
  local w = waiter()
  active[self] = true
  self._c:start(w.k)
  local err = await(w)
  if err ~= nil then raise(err, 1) end
end

--- Close gracefully; pending invocations fail with kind "closed".
function methods:stop()
  if self._c:state() == "disconnected" then return end
  local w = waiter()
  self._c:stop(w.k)
  local err = await(w)
  if err ~= nil then raise(err, 1) end
end

--- Call a hub method and return its result (nil for void methods).
function methods:invoke(method, ...)
  if type(method) ~= "string" then usage("invoke: the method name must be a string, got %s", type(method)) end
  local co, main = co_running()
  if main or co == nil then
    -- the main thread blocks anyway: the core waits for the answer itself
    -- (no waiter, no done function); false: no room to send, so wait below
    local sent, err, result = self._c:invoke_wait(method, ...)
    if sent then
      if err ~= nil then raise(err, 1) end
      return result
    end
  end
  local w = waiter()
  while self._c:invoke(method, w.k, ...) == false do wait_writable(self) end
  local err, result = await(w)
  if err ~= nil then raise(err, 1) end
  return result
end

--- Call a hub method without waiting for it; returns once it is queued
--- (after waiting for room when the send buffer is full).
function methods:send(method, ...)
  if type(method) ~= "string" then usage("send: the method name must be a string, got %s", type(method)) end
  local c = self._c
  while not c:send(method, ...) do wait_writable(self) end
end

---------------------------------------------------------------------------
-- server-to-client streams
---------------------------------------------------------------------------

local Stream = { __name = "signalr.Stream" }
Stream.__index = Stream

-- Items wait in the stream's queue (s._q[s._head .. s._tail]) until read.
-- Past s._limit queued (or running subscriber callbacks), the connection
-- pauses: the core holds what arrives and, past the loop's bound, stops
-- reading the socket. Under half the limit it resumes.
local function stream_pause(s)
  if not s._paused then
    s._paused = true
    s._conn._c:pause()
  end
end

local function stream_resume(s)
  if s._paused then
    s._paused = false
    s._conn._c:resume()
  end
end

local function stream_wake(s)
  local w = s._waiter
  if w ~= nil then
    s._waiter = nil
    w.k()
  end
end

local function sub_call(s, fn, ...)
  if fn ~= nil then start_pooled(s._conn._on_coroutine_error, fn, ...) end
end

-- A subscriber's next(item), counted while it runs (it may wait).
local function sub_next(s, item)
  s._running = s._running + 1
  local ok, err = yxpcall(s._sub.next, handler_traceback, item)
  s._running = s._running - 1
  if not ok then log(s._conn._logger, "error", "stream subscriber's next failed: " .. tostring(err)) end
  if s._running <= floor(s._limit / 2) then stream_resume(s) end
end

local function stream_end(s)
  stream_resume(s)
  local sub = s._sub
  if sub == nil then return stream_wake(s) end
  if s._canceled then return end
  if s._err ~= nil then sub_call(s, sub.error, s._err) else sub_call(s, sub.complete) end
end

local function on_stream_item(s, item, err)
  if s._finished then return end
  if err ~= nil then
    -- an item we cannot convert: fail the stream rather than skip it
    s._finished, s._err = true, err
    s._conn._c:cancel(s.id)
    return stream_end(s)
  end
  if s._sub ~= nil then
    start_pooled(s._conn._on_coroutine_error, sub_next, s, item)
    if s._running >= s._limit then stream_pause(s) end
    return
  end
  local t = s._tail + 1
  s._tail = t
  s._q[t] = item
  if t - s._head + 1 >= s._limit then stream_pause(s) end
  stream_wake(s)
end

local function on_stream_done(s, err)
  if s._finished then return end
  s._finished = true
  if err ~= nil and not (s._canceled and err.kind == "canceled") then s._err = err end
  stream_end(s)
end

--- Start a server-to-client stream; returns a stream object at once.
function methods:stream(method, ...)
  if type(method) ~= "string" then usage("stream: the method name must be a string, got %s", type(method)) end
  local s = setmetatable({
    _conn = self, _q = {}, _head = 1, _tail = 0, _limit = self._stream_buffer,
    _finished = false, _canceled = false, _paused = false, _running = 0,
  }, Stream)
  local on_item = function(item, err) on_stream_item(s, item, err) end
  local on_done = function(err) on_stream_done(s, err) end
  local c = self._c
  local id = c:stream(method, on_item, on_done, ...)
  while id == false do
    wait_writable(self)
    id = c:stream(method, on_item, on_done, ...)
  end
  s.id = id
  return s
end

-- The next item, waiting for it; nil at the end; raises the stream's error.
local function stream_next(s)
  while true do
    local h = s._head
    if h <= s._tail then
      local item = s._q[h]
      s._q[h] = nil
      s._head = h + 1
      if s._paused and s._tail - h <= floor(s._limit / 2) then stream_resume(s) end
      return item
    end
    if s._finished then
      if s._err ~= nil and not s._raised then
        s._raised = true
        raise(s._err, 1)
      end
      return nil
    end
    local w = waiter()
    s._waiter = w
    await(w)
  end
end

--- for item in s:items() do ... end: each item in order (null items as
--- signalr.null); the server's error is raised after the items before it.
function Stream:items()
  if self._sub ~= nil then usage("stream:items: the stream has a subscriber") end
  self._iterating = true
  return stream_next, self
end

--- Callbacks instead of iteration: observer.next(item) for each item,
--- then observer.error(err) or observer.complete(). Each runs in a managed
--- coroutine. Returns the stream (cancel it to stop).
function Stream:subscribe(observer)
  if type(observer) ~= "table" then usage("stream:subscribe: expected a table of callbacks, got %s", type(observer)) end
  for _, k in ipairs({ "next", "error", "complete" }) do
    if observer[k] ~= nil and type(observer[k]) ~= "function" then
      usage("stream:subscribe: %s must be a function, got %s", k, type(observer[k]))
    end
  end
  if self._sub ~= nil or self._iterating then usage("stream:subscribe: the stream is already being read") end
  self._sub = { next = observer.next or function() end, error = observer.error, complete = observer.complete }
  -- what arrived before the subscription goes first, in order
  for i = self._head, self._tail do
    start_pooled(self._conn._on_coroutine_error, sub_next, self, self._q[i])
    self._q[i] = nil
  end
  self._head, self._tail = 1, 0
  if self._finished then stream_end(self) elseif self._running < self._limit then stream_resume(self) end
  return self
end

--- Stop the stream: the server is told at once (its cancellation token
--- fires), queued and later items are dropped, the iteration ends and no
--- subscriber callback runs any more. Does nothing once the stream ended.
function Stream:cancel()
  if self._finished then return end
  self._canceled = true
  for i = self._head, self._tail do self._q[i] = nil end
  self._head, self._tail = 1, 0
  local c = self._conn._c
  if c:state() ~= "disconnected" then c:cancel(self.id) end
  if not self._finished then on_stream_done(self, nil) end
end

--- Items received and not read yet.
function Stream:buffered()
  return self._tail - self._head + 1
end

Stream.__close = Stream.cancel

function Stream:__tostring()
  return ("signalr.Stream (%s)"):format(self._canceled and "canceled" or (self._finished and "ended" or "open"))
end

local function remove_from(list, fn, all)
  local out, removed = {}, false
  for i = 1, #list do
    local h = list[i]
    if h == fn and (all or not removed) then
      removed = true
    else
      out[#out + 1] = h
    end
  end
  return out, removed
end

local Subscription = { __name = "signalr.Subscription" }
Subscription.__index = Subscription

--- Remove the handler this subscription registered (idempotent).
function Subscription:remove()
  if self._removed then return end
  self._removed = true
  self._remove()
end

local function subscription(remove)
  return setmetatable({ _remove = remove, _removed = false }, Subscription)
end

--- Register handler(...) for the server's calls of `method` (any case).
function methods:on(method, handler)
  if type(method) ~= "string" then usage("on: the method name must be a string, got %s", type(method)) end
  if type(handler) ~= "function" then usage("on: the handler must be a function, got %s", type(handler)) end
  local key = method:lower()
  local old = self._handlers[key] or {}
  -- copy on write: a dispatch in progress keeps iterating its own list
  local list = { unpack(old) }
  list[#list + 1] = handler
  self._handlers[key] = list
  return subscription(function()
    local cur = self._handlers[key]
    if cur == nil then return end
    local new = remove_from(cur, handler, false)
    self._handlers[key] = #new > 0 and new or nil
  end)
end

--- Remove one handler of a method, or all of them.
function methods:off(method, handler)
  if type(method) ~= "string" then usage("off: the method name must be a string, got %s", type(method)) end
  if handler ~= nil and type(handler) ~= "function" then
    usage("off: the handler must be a function, got %s", type(handler))
  end
  local key = method:lower()
  local cur = self._handlers[key]
  if cur == nil then return end
  if handler == nil then
    self._handlers[key] = nil
  else
    local new = remove_from(cur, handler, true)
    self._handlers[key] = #new > 0 and new or nil
  end
end

local function add_callback(self, field, fn, what)
  if type(fn) ~= "function" then usage("%s: expected a function, got %s", what, type(fn)) end
  local list = { unpack(self[field]) }
  list[#list + 1] = fn
  self[field] = list
  return subscription(function()
    self[field] = remove_from(self[field], fn, false)
  end)
end

--- fn(err) once the connection is closed for good (err nil after stop()).
function methods:on_close(fn)
  return add_callback(self, "_close", fn, "on_close")
end

--- fn(err) when a connection loss starts automatic reconnection.
function methods:on_reconnecting(fn)
  return add_callback(self, "_reconnecting", fn, "on_reconnecting")
end

--- fn(connection_id) after a successful reconnect (nil when negotiation is
--- skipped).
function methods:on_reconnected(fn)
  return add_callback(self, "_reconnected", fn, "on_reconnected")
end

--- Free the connection now, without the closing handshake. Pending calls
--- fail with kind "closed"; on_close handlers run if it was not
--- disconnected. Also the __close of `local conn <close> = ...` (Lua 5.4;
--- on 5.3 __close is there but nothing calls it).
function methods:close()
  local c = self._c
  local was = c:state()
  c:close()
  active[self] = nil
  if was ~= "disconnected" then dispatch_close(self, nil) end
end

Connection.__close = methods.close

-- The callback lists are replaced, never changed in place (add_callback,
-- remove_from), so every connection starts with this one empty list rather
-- than three of its own: an idle connection with no callbacks keeps none.
local NO_CALLBACKS = {}

local function new_connection(opts, logger, stream_buffer)
  local self = setmetatable({
    _stream_buffer = stream_buffer,
    _handlers = {},
    _close = NO_CALLBACKS,
    _reconnecting = NO_CALLBACKS,
    _reconnected = NO_CALLBACKS,
    _logger = logger,
  }, Connection)
  self._on_coroutine_error = coroutine_failed(self)
  local c = core.connection(opts)
  self._c = c
  -- These closures capture self and live in the userdata's user value, so
  -- the pair is collectable once the user drops it.
  c:on_invocation(invocation_dispatcher(self))
  c:on_result(function(id, target, ...) return dispatch_result(self, id, target, ...) end)
  c:on_close(function(err) dispatch_close(self, err) end)
  c:on_state(function(old, new) dispatch_state(self, old, new) end)
  c:on_reconnecting(function(err) dispatch_reconnecting(self, err) end)
  c:on_reconnected(function(id) dispatch_reconnected(self, id) end)
  return self
end

---------------------------------------------------------------------------
-- builder
---------------------------------------------------------------------------

local Builder = { __name = "signalr.HubConnectionBuilder" }
Builder.__index = Builder

--- A new connection builder.
function M.builder()
  return setmetatable({}, Builder)
end

function Builder:with_url(url, opts)
  self._url, self._url_opts, self._url_set = url, opts, true
  return self
end

local DEFAULT_RECONNECT_DELAYS = { 0, 2, 10, 30 }

function Builder:with_automatic_reconnect(policy)
  self._reconnect = policy == nil and DEFAULT_RECONNECT_DELAYS or policy
  return self
end

--- Items a server-to-client stream queues before reading pauses (default
--- 1000); for a subscriber, callbacks running at once.
function Builder:with_stream_buffer(items)
  self._stream_buffer, self._stream_buffer_set = items, true
  return self
end

function Builder:with_hub_protocol(name)
  self._protocol, self._protocol_set = name, true
  return self
end

function Builder:with_server_timeout(seconds)
  self._server_timeout, self._server_timeout_set = seconds, true
  return self
end

function Builder:with_keepalive_interval(seconds)
  self._keepalive, self._keepalive_set = seconds, true
  return self
end

function Builder:with_handshake_timeout(seconds)
  self._handshake_timeout, self._handshake_timeout_set = seconds, true
  return self
end

--- with_stateful_reconnect([{ buffer_size = bytes }]): bytes of
--- unacknowledged messages kept for replay (default 100000).
function Builder:with_stateful_reconnect(opts)
  self._stateful, self._stateful_opts = true, opts
  return self
end

--- configure_logging(level [, fn]) or (fn); fn(level, message).
function Builder:configure_logging(level, fn)
  self._log_level, self._log_fn, self._log_set = level, fn, true
  return self
end

local TRANSPORTS = { websockets = 1, serversentevents = 2, longpolling = 4 }

local function transport_mask(t)
  local list = t
  if type(t) == "string" then list = { t } end
  if type(list) ~= "table" then
    usage("with_url: transports must be a string or a list of strings, got %s", type(t))
  end
  if #list == 0 then usage("with_url: transports must not be empty") end
  local mask = 0
  for _, name in ipairs(list) do
    local bit = type(name) == "string" and TRANSPORTS[name:lower():gsub("[_%-]", "")]
    if not bit then
      usage("with_url: unknown transport %s (use websockets, server_sent_events or long_polling)",
        tostring(name))
    end
    -- mask | bit, without 5.3's bitwise operators (a syntax error on 5.1)
    if floor(mask / bit) % 2 == 0 then mask = mask + bit end
  end
  return mask
end

local function check_seconds(v, what)
  if type(v) ~= "number" or v ~= v then usage("%s: expected a number of seconds, got %s", what, tostring(v)) end
  if v < 0 then usage("%s: must not be negative (got %s)", what, tostring(v)) end
  return v
end

-- The core's reconnect option: a list of delays in seconds (the core keeps
-- them), or a function(ctx) -> seconds or nil that the core calls before
-- each attempt. An empty list never retries.
local function reconnect_policy(p)
  if type(p) == "function" then return p end
  if type(p) ~= "table" then
    usage("with_automatic_reconnect: expected a list of delays, a function or a policy table, got %s", type(p))
  end
  if type(p.next_retry_delay) == "function" then
    return function(ctx) return p:next_retry_delay(ctx) end
  end
  local delays = {}
  for i, d in ipairs(p) do
    check_seconds(d, "with_automatic_reconnect: delay " .. i)
    if d == HUGE then usage("with_automatic_reconnect: delay %d must be finite", i) end
    delays[i] = d
  end
  for k in pairs(p) do
    if not is_integer(k) or k < 1 or k > #delays then
      usage("with_automatic_reconnect: a table must be a list of delays or have a next_retry_delay method")
    end
  end
  return delays
end

local function stateful_buffer_size(o)
  if o == nil then return nil end
  if type(o) ~= "table" then
    usage("with_stateful_reconnect: expected nil or a table { buffer_size = bytes }, got %s", type(o))
  end
  for k in pairs(o) do
    if k ~= "buffer_size" then
      usage("with_stateful_reconnect: unknown option '%s' (only buffer_size)", tostring(k))
    end
  end
  local n = o.buffer_size
  if n == nil then return nil end
  if not is_integer(n) or n <= 0 then
    usage("with_stateful_reconnect: buffer_size must be a positive integer number of bytes, got %s",
      tostring(n))
  end
  return n
end

local URL_OPTIONS = { transports = true, skip_negotiation = true, headers = true, access_token = true,
  tls = true, proxy = true }
-- "a, b, c": the names of an option table, sorted, for usage errors.
local function option_names(t)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

local TLS_OPTIONS = { verify = true, ca_file = true, cert_file = true, key_file = true }

local function opt_string(v, what)
  if v ~= nil and type(v) ~= "string" then usage("with_url: %s must be a string, got %s", what, type(v)) end
  return v
end

--- Check the whole configuration and make the connection.
function Builder:build()
  local warnings = {}
  -- logging first: the other warnings go to this logger
  local logger = default_logger
  if self._log_set then
    local level, fn = check_logging(self._log_level, self._log_fn, "configure_logging")
    logger = new_logger(level, fn)
  end

  local url = self._url
  if not self._url_set or url == nil then usage("build: no hub URL; call with_url(url) first") end
  if type(url) ~= "string" then usage("with_url: the URL must be a string, got %s", type(url)) end
  local scheme = url:match("^(%a+)://[^/]")
  scheme = scheme and scheme:lower()
  if scheme ~= "http" and scheme ~= "https" and scheme ~= "ws" and scheme ~= "wss" then
    usage("with_url: the URL must start with http:// or https:// (got '%s')", url)
  end

  local o = self._url_opts
  if o ~= nil and type(o) ~= "table" then usage("with_url: options must be a table, got %s", type(o)) end
  o = o or {}
  for k in pairs(o) do
    if not URL_OPTIONS[k] then
      usage("with_url: unknown option '%s' (options: %s)", tostring(k), option_names(URL_OPTIONS))
    end
  end
  local opts = { url = url, protocol = "json" }
  if o.skip_negotiation ~= nil and type(o.skip_negotiation) ~= "boolean" then
    usage("with_url: skip_negotiation must be a boolean, got %s", type(o.skip_negotiation))
  end
  opts.skip_negotiation = o.skip_negotiation or false
  if o.transports ~= nil then
    opts.transports = transport_mask(o.transports)
  elseif opts.skip_negotiation then
    opts.transports = TRANSPORTS.websockets
  end
  if (scheme == "ws" or scheme == "wss") and not opts.skip_negotiation then
    usage("with_url: a %s:// URL connects the WebSocket straight away: add skip_negotiation = true, or use %s:// to negotiate",
      scheme, scheme == "ws" and "http" or "https")
  end
  if opts.skip_negotiation and opts.transports ~= TRANSPORTS.websockets then
    usage("with_url: skip_negotiation needs the WebSockets transport alone (transports = \"websockets\")")
  end
  if o.headers ~= nil then
    if type(o.headers) ~= "table" then usage("with_url: headers must be a table, got %s", type(o.headers)) end
    local h = {}
    for k, v in pairs(o.headers) do
      if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
        usage("with_url: headers must map names to string values")
      end
      h[k] = tostring(v)
    end
    opts.headers = h
  end
  local tok = o.access_token
  if tok ~= nil and type(tok) ~= "string" and type(tok) ~= "function" then
    usage("with_url: access_token must be a string or a function, got %s", type(tok))
  end
  opts.access_token = tok
  if o.tls ~= nil then
    local tls = o.tls
    if type(tls) ~= "table" then usage("with_url: tls must be a table, got %s", type(tls)) end
    for k in pairs(tls) do
      if not TLS_OPTIONS[k] then
        usage("with_url: unknown tls option '%s' (tls options: %s)", tostring(k), option_names(TLS_OPTIONS))
      end
    end
    if tls.verify ~= nil and type(tls.verify) ~= "boolean" then
      usage("with_url: tls.verify must be a boolean, got %s", type(tls.verify))
    end
    opts.tls_verify = tls.verify ~= false
    opts.ca_file = opt_string(tls.ca_file, "tls.ca_file")
    opts.cert_file = opt_string(tls.cert_file, "tls.cert_file")
    opts.key_file = opt_string(tls.key_file, "tls.key_file")
    if (opts.cert_file == nil) ~= (opts.key_file == nil) then
      usage("with_url: tls.cert_file and tls.key_file go together")
    end
  end
  opts.proxy = opt_string(o.proxy, "proxy")

  if self._protocol_set then
    local p = self._protocol
    if type(p) ~= "string" then usage("with_hub_protocol: expected \"json\" or \"messagepack\", got %s", type(p)) end
    p = p:lower()
    if p == "messagepack" or p == "json" then
      opts.protocol = p
    else
      usage("with_hub_protocol: unknown protocol '%s' (use \"json\" or \"messagepack\")", self._protocol)
    end
  end
  if self._server_timeout_set then opts.server_timeout = check_seconds(self._server_timeout, "with_server_timeout") end
  if self._keepalive_set then opts.keepalive_interval = check_seconds(self._keepalive, "with_keepalive_interval") end
  if self._handshake_timeout_set then
    opts.handshake_timeout = check_seconds(self._handshake_timeout, "with_handshake_timeout")
  end

  if self._reconnect ~= nil then opts.reconnect = reconnect_policy(self._reconnect) end
  if self._stateful then
    opts.stateful_reconnect = true
    opts.stateful_buffer_size = stateful_buffer_size(self._stateful_opts)
  end

  if logger.level < LEVELS.none then
    opts.log_level = logger.name
    local fn = logger.fn
    opts.log = function(level, message)
      local ok, err = pcall(fn, level, message)
      if not ok then io.stderr:write("signalr: the log function failed: ", tostring(err), "\n") end
    end
  else
    opts.log_level = "none"
  end

  local stream_buffer = 1000
  if self._stream_buffer_set then
    local n = self._stream_buffer
    if not is_integer(n) or n < 2 then
      usage("with_stream_buffer: expected an integer number of items of at least 2, got %s", tostring(n))
    end
    stream_buffer = n
  end
  local conn = new_connection(opts, logger, stream_buffer)
  for _, w in ipairs(warnings) do log(logger, "warning", w) end
  return conn
end

return M
