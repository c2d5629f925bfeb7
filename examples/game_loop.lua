-- When to use: a game or simulation with its own fixed-timestep frame loop (LÖVE's love.update, an
-- engine's tick): call signalr.poll(0) once a frame, which never blocks, and talk in spawned coroutines.
--
-- How: the frame loop below runs at 60 Hz. Each frame it calls signalr.poll(0), which runs the
-- handlers of what arrived and resumes the coroutines whose wait is over, then updates the game.
-- The SignalR conversation runs in a coroutine started by signalr.spawn: start and invoke yield to
-- the frame loop instead of stalling it. luasocket's sleep stands in for the engine's vsync.
-- The WebSocket service (libwebsockets and its TLS setup) is made on the I/O thread, so even the
-- first connection's start leaves poll(0) short.
--
--   lua5.4 examples/game_loop.lua [hub url]     (default http://127.0.0.1:5000/testhub)
local socket = require("socket")
local signalr = require("signalr")

local url = arg[1] or "http://127.0.0.1:5000/testhub"
local conn = signalr.builder():with_url(url):build()

local FRAME = 1 / 60
local MAX_FRAMES = 15 * 60 -- a broken setup fails after 15 s instead of hanging
local frame = 0
local pushes = 0
local done, failed = false, nil

-- the server pushes "tick" calls while the frames run; handlers run inside poll(0)
conn:on("tick", function(n)
  pushes = pushes + 1
  print(("frame %d: server called tick(%d)"):format(frame, n))
end)

signalr.spawn(function()
  -- signalr.pcall: pcall, that Lua 5.1 can yield across too
  local ok, err = signalr.pcall(function()
    conn:start()
    print(("frame %d: connected"):format(frame))
    print(("frame %d: Add(40, 2) = %d"):format(frame, conn:invoke("Add", 40, 2)))
    conn:invoke("StartPush", "tick", 3, 50) -- tick(1) .. tick(3), 50 ms apart
    while pushes < 3 do coroutine.yield() end -- a plain yield: go on next frame
    conn:stop()
    print(("frame %d: stopped: %s"):format(frame, conn.state))
  end)
  failed = not ok and err or nil
  done = true
end)

local longest = 0
local next_frame = socket.gettime()
while not done and frame < MAX_FRAMES do
  frame = frame + 1
  local t = socket.gettime()
  signalr.poll(0) -- never blocks
  longest = math.max(longest, socket.gettime() - t)
  -- update and draw the game here
  next_frame = next_frame + FRAME
  local wait = next_frame - socket.gettime()
  if wait > 0 then socket.sleep(wait) end
end

if failed or not done then
  io.stderr:write("game loop example: " .. (failed and tostring(failed) or "timed out") .. "\n")
  os.exit(1)
end
print(("%d frames; the longest poll(0) took %.1f ms"):format(frame, longest * 1000))
