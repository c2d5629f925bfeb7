-- When to use: your program already runs a libuv loop through luv (a luv server, a Neovim plugin, a
-- tool built on uv.run) and SignalR should live in that same loop without a thread of its own.
--
-- How: a uv poll handle watches signalr.fd() and calls signalr.poll(0) whenever it is readable. The
-- descriptor covers signalr's own timers too (sleep, reconnect delays, timeouts), so no uv timer is
-- needed for them. The SignalR work runs in a managed coroutine (signalr.spawn), where invoke and
-- start yield instead of blocking uv.run.
--
--   lua5.4 examples/luv.lua [hub url]     (default http://127.0.0.1:5000/testhub, the bundled hub)
local uv = require("luv")
local signalr = require("signalr")

local url = arg[1] or "http://127.0.0.1:5000/testhub"
local conn = signalr.builder():with_url(url):build()

conn:on("notify", function(text)
  print("server called notify: " .. tostring(text))
end)

-- signalr's work, whenever signalr.fd() is readable
local watcher = uv.new_poll(signalr.fd())
watcher:start("r", function(err)
  assert(not err, err)
  signalr.poll(0)
end)

-- something else the loop does meanwhile
local ticks = 0
local ticker = uv.new_timer()
ticker:start(10, 10, function() ticks = ticks + 1 end)

-- a broken setup fails instead of hanging (unref: it does not keep uv.run going by itself)
local guard = uv.new_timer()
guard:start(15000, 0, function()
  io.stderr:write("luv example: timed out\n")
  os.exit(1)
end)
guard:unref()

local failed
signalr.spawn(function()
  -- signalr.pcall: pcall, that Lua 5.1 can yield across too
  local ok, err = signalr.pcall(function()
    conn:start()
    print("connected: " .. conn.state)
    print("Add(40, 2) = " .. conn:invoke("Add", 40, 2))
    conn:invoke("CallMeBack", "notify", "hello from luv")
    signalr.sleep(0.05)           -- a signalr timer: the fd wakes uv for it
    conn:stop()
    print("stopped: " .. conn.state)
  end)
  if not ok then failed = err end
  -- nothing left for uv.run() to wait for (close handles before uv.run returns: luv 1.44
  -- crashes at exit on a handle closed after the loop's last run)
  watcher:close()
  ticker:close()
  guard:close()
end)

uv.run()
if failed then
  io.stderr:write("luv example: " .. tostring(failed) .. "\n")
  os.exit(1)
end
print("the uv loop ran meanwhile: " .. (ticks > 0 and "yes" or "no"))
