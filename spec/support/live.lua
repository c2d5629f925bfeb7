-- Shared pieces of the specs that drive live connections to the hub through
-- the loopback proxy (reconnect, stateful reconnect, lifecycle callbacks,
-- cutproxy). Busted only: its assert and setup/teardown/after_each come from
-- require("busted"), which exports them (a required module does not see the
-- spec file's environment).
--
--   local L = require("spec.support.live")
--   L.proxied(opts, set)       in a describe: a hub and a proxy in front of it
--   L.builder(url, configure, url_opts) -> builder (logging off)
--   L.build(url, configure, url_opts) -> conn, stopped after each spec
--   L.stop_all()               stop every connection L.build made
--   L.track(conn, log) -> ev   the lifecycle events of conn, in order
--   L.wait_for(pred, timeout, what)  H.wait_for that fails naming the caller's line
--   L.pending_invoke(conn, ...) -> p  conn:invoke in a managed coroutine
local H = require("spec.helper")
local C = require("spec.support.compat")
local busted = require("busted")
local assert = busted.assert

-- loaded on first use: the cutproxy spec needs no client
local function signalr() return require("signalr") end

local L = {}

local conns = {}

-- A builder for `url` (url_opts for with_url), logging off; configure(b)
-- adds options.
function L.builder(url, configure, url_opts)
  local b = signalr().builder():with_url(url, url_opts)
  b:configure_logging("none")
  if configure then configure(b) end
  return b
end

-- A connection built by L.builder, kept (strong reference) until
-- L.stop_all() stops it after the spec.
function L.build(url, configure, url_opts)
  local conn = L.builder(url, configure, url_opts):build()
  conns[#conns + 1] = conn
  return conn
end

function L.stop_all()
  for i, c in ipairs(conns) do
    pcall(c.stop, c)
    conns[i] = nil
  end
end

-- In a describe block: before its specs a hub (the shared one, or a private
-- one started with H.start_hub(opts.hub) and stopped afterwards) and a proxy
-- in front of it; set(hub, proxy) receives both. After each spec the hub
-- runs again (private hub), the proxy forwards and accepts again, and every
-- connection L.build made is stopped.
function L.proxied(opts, set)
  opts = opts or {}
  local hub, proxy
  busted.setup(function()
    hub = opts.hub and H.start_hub(opts.hub) or H.shared_hub()
    proxy = H.start_proxy(hub.port)
    set(hub, proxy)
  end)

  busted.teardown(function()
    if proxy then proxy:stop() end
    if opts.hub and hub then hub:stop() end
  end)

  busted.after_each(function()
    if opts.hub then hub:start() end -- running again (and SIGCONT) if a spec left it down
    proxy:resume()
    proxy:refuse(false)
    L.stop_all()
  end)
end

-- Records the lifecycle events of conn, in order, in ev.log (shared with
-- other recorders when `log` is given).
function L.track(conn, log)
  local ev = { log = log or {}, reconnecting = {}, reconnected = {}, closed = {} }
  conn:on_reconnecting(function(err)
    ev.reconnecting[#ev.reconnecting + 1] = { err = err, state = conn.state, t = H.mono() }
    ev.log[#ev.log + 1] = "reconnecting"
  end)
  conn:on_reconnected(function(id)
    ev.reconnected[#ev.reconnected + 1] = { id = id, state = conn.state, t = H.mono() }
    ev.log[#ev.log + 1] = "reconnected"
  end)
  conn:on_close(function(err)
    ev.closed[#ev.closed + 1] = { err = err, state = conn.state, t = H.mono() }
    ev.log[#ev.log + 1] = "close"
  end)
  return ev
end

-- Drive events until pred() holds; fail (naming the caller's line) after timeout s.
function L.wait_for(pred, timeout, what)
  local line = debug.getinfo(2, "l").currentline
  assert.is_truthy(H.wait_for(pred, timeout or 5),
    ("%s: not reached within %s s (line %d)"):format(what or "condition", timeout or 5, line))
end

-- Starts conn:invoke(...) in a managed coroutine; the returned table gets
-- .done, .ok, .result / .err when it ends.
function L.pending_invoke(conn, ...)
  local p = {}
  local args = C.pack(...)
  signalr().spawn(function()
    -- signalr.pcall is pcall on 5.2+ and LuaJIT; on 5.1 a wait under a
    -- plain pcall would pump (block spawn) instead of yielding
    local ok, r = signalr().pcall(conn.invoke, conn, C.unpack(args, 1, args.n))
    p.ok, p.done = ok, true
    if ok then p.result = r else p.err = r end
  end)
  return p
end

return L
