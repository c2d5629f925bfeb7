-- When to use: your program runs on cqueues (lua-http, a cqueues server) and SignalR should share
-- its loop; cqueues code waits for SignalR results on a cqueues condition, never blocking the loop.
--
-- How: one cqueues coroutine waits until signalr.fd() is readable and calls signalr.poll(0). The
-- descriptor covers signalr's own timers too. SignalR calls run in managed coroutines
-- (signalr.spawn), where they yield to signalr's scheduler; call_signalr below hands their results
-- to a cqueues coroutine through a condition variable.
--
--   lua5.4 examples/cqueues.lua [hub url]     (default http://127.0.0.1:5000/testhub)
local cqueues = require("cqueues")
local condition = require("cqueues.condition")
local signalr = require("signalr")

local url = arg[1] or "http://127.0.0.1:5000/testhub"
local cq = cqueues.new()
local finished = condition.new()
local done = false

-- what cqueues.poll needs to watch a bare descriptor
local signalr_fd = { pollfd = signalr.fd(), events = "r" }

-- signalr's work, whenever its descriptor is readable, until the main coroutine is done
cq:wrap(function()
  while not done do
    cqueues.poll(signalr_fd, finished)
    signalr.poll(0)
  end
end)

-- table.pack, also on Lua 5.1 and LuaJIT
local function pack(...) return { n = select("#", ...), ... } end

-- Run fn(...) in a managed signalr coroutine and wait for its results from a cqueues coroutine.
local function call_signalr(fn, ...)
  local cond, res = condition.new(), nil
  signalr.spawn(function(...)
    -- signalr.pcall: pcall, that Lua 5.1 can yield across too
    res = pack(signalr.pcall(fn, ...))
    cond:signal()
  end, ...)
  while not res do cond:wait() end
  if not res[1] then error(res[2], 0) end
  return (table.unpack or unpack)(res, 2, res.n)
end

-- the application: plain cqueues code
cq:wrap(function()
  local conn = signalr.builder():with_url(url):build()
  local called = condition.new()
  local notified
  conn:on("notify", function(text)
    notified = text
    called:signal()
  end)

  call_signalr(conn.start, conn)
  print("connected: " .. conn.state)
  print("Add(40, 2) = " .. call_signalr(conn.invoke, conn, "Add", 40, 2))
  call_signalr(conn.send, conn, "CallMeBack", "notify", "hello from cqueues")
  while not notified do called:wait() end
  print("server called notify: " .. notified)
  call_signalr(conn.stop, conn)
  print("stopped: " .. conn.state)

  done = true
  finished:signal()
end)

-- run the loop; a broken setup fails instead of hanging
local deadline = cqueues.monotime() + 15
while not cq:empty() do
  local ok, err = cq:step(1)
  if not ok then
    io.stderr:write("cqueues example: " .. tostring(err) .. "\n")
    os.exit(1)
  end
  if cqueues.monotime() > deadline then
    io.stderr:write("cqueues example: timed out\n")
    os.exit(1)
  end
end
