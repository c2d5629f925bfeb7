-- When to use: your program is a copas dispatcher (luasocket servers and clients on copas.step or
-- copas.loop) and SignalR should share that loop (Debian's lua-copas: Lua 5.1 and LuaJIT).
--
-- How: copas waits on luasocket-like objects, so a small object hands it signalr.fd() (getfd) and
-- a copas thread calls signalr.poll(0) whenever copas finds it readable. The descriptor covers
-- signalr's own timers too (sleep, reconnect delays, timeouts), so copas needs no timer for them.
-- The SignalR work runs in a managed coroutine (signalr.spawn), where invoke and start yield
-- instead of blocking copas; meanwhile copas serves a TCP echo server and client of its own.
--
--   lua5.1 examples/copas.lua [hub url]     (or luajit; default http://127.0.0.1:5000/testhub, the bundled hub)
local copas = require("copas")
local socket = require("socket")
local signalr = require("signalr")

local url = arg[1] or "http://127.0.0.1:5000/testhub"
local conn = signalr.builder():with_url(url):build()

conn:on("notify", function(text)
  print("server called notify: " .. tostring(text))
end)

-- What copas.receive needs: getfd for socket.select, and receive, which copas calls until it stops
-- answering "timeout" (it waits for readability in between). close: copas closes the object that
-- last woke a thread when the thread ends.
local signalr_fd = { fd = signalr.fd() }
function signalr_fd:getfd() return self.fd end
function signalr_fd:dirty() return false end
function signalr_fd:close() end
function signalr_fd:receive()
  local readable = socket.select({ self }, nil, 0)
  if readable[1] then return true end
  return nil, "timeout"
end

local done = false

-- signalr's work, whenever its descriptor is readable, until the conversation is over
copas.addthread(function()
  while not done do
    copas.receive(signalr_fd)
    signalr.poll(0)
  end
end)

-- something else the loop does meanwhile: a TCP echo server and a client of it, both on copas
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
copas.addserver(server, function(skt)
  local client = copas.wrap(skt)
  local line = client:receive("*l")
  if line then client:send(line .. "\n") end
end)

local echoed
copas.addthread(function()
  local skt = socket.tcp()
  assert(copas.connect(skt, "127.0.0.1", port))
  local client = copas.wrap(skt)
  client:send("hello over copas\n")
  echoed = client:receive("*l")
  skt:close()
end)

local failed
signalr.spawn(function()
  -- signalr.pcall: pcall, that Lua 5.1 can yield across too
  local ok, err = signalr.pcall(function()
    conn:start()
    print("connected: " .. conn.state)
    print("Add(40, 2) = " .. conn:invoke("Add", 40, 2))
    conn:invoke("CallMeBack", "notify", "hello from copas")
    signalr.sleep(0.05)           -- a signalr timer: the fd wakes copas for it
    conn:stop()
    print("stopped: " .. conn.state)
  end)
  if not ok then failed = err end
  done = true
end)

-- copas 1.1 has no way out of copas.loop(): step until both sides are done; a broken setup fails
-- instead of hanging
local deadline = socket.gettime() + 15
while not (done and echoed) do
  copas.step(1)
  if socket.gettime() > deadline then
    io.stderr:write("copas example: timed out\n")
    os.exit(1)
  end
end
server:close()
if failed then
  io.stderr:write("copas example: " .. tostring(failed) .. "\n")
  os.exit(1)
end
print("copas echoed meanwhile: " .. echoed)
