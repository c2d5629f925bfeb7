-- bench/peers.lua: the same workloads run by the official .NET client, the
-- official TypeScript client on node and ours, side by side against ONE test
-- hub, interleaved client by client over several rounds so that machine noise
-- hits all alike; prints the medians and the ratios ours/.NET and ours/node,
-- and saves every round's numbers plus the medians as TSV.
--
-- A fourth column, "floor", is a measuring instrument, not a client
-- (bench/peers/floor.c, built as $BUILD/bench/peer_floor): raw socket, frames
-- built by hand, no library, no JSON parser. It runs invoke, send and receive
-- only, and shows what the hub and this machine allow at best in the same run;
-- the ratio floor/.NET is the best any client could reach against .NET.
--
--   make bench-peers [ROUNDS=n] [QUICK=1] [IDLE10K=1] [OUT=path] [BENCH_ARGS=...]
--   lua5.4 bench/peers.lua [--rounds n] [--quick] [--idle10k] [--out path]
--                          [--clients dotnet,node,ours,floor] [--workloads invoke,send,receive,stream,upload,idle]
--                          [--no-warm]
--
-- The workloads, what "sent" means for each client and how CPU is measured
-- are written down in bench/peers/lua.lua (the reference program) and in
-- docs/PERFORMANCE.md. In short:
--   invoke   sequential invoke("Add", i, 1): rate, p50, p99, client CPU/call
--   send     n pipelined send("Count"), then invoke("CountDone") == n: the
--            time runs until the SERVER has processed all n
--   receive  the server pushes n Tick(i) as fast as it can (StartPush); the
--            time runs from the invoke that starts it to the n-th handler call
--   stream   a server-to-client stream Counter(n, 0) read to its end
--            (await foreach / subscribe / for ... in s:items())
--   upload   n integers written to a client-to-server stream into Sum; the
--            time runs until Sum returns (the hub has read them all)
--   idle     k open connections: RSS growth per connection (after a GC)
-- Each client is a separate program (bench/peers/dotnet, bench/peers/node,
-- bench/peers/lua.lua, $BUILD/bench/peer_floor) taking HUB_URL WORKLOAD key=value... and printing one
-- "RESULT client=... key=value ..." line, parsed here.
--
-- The peers are built on demand: `npm ci` in bench/peers/node when
-- node_modules is missing or older than package-lock.json, `dotnet build` of
-- bench/peers/dotnet when out/PeerBench.dll is missing or older than a source.
-- Our client comes from $BUILD (default build), as scripts/env.sh sets it.

local function script_dir()
  local src = debug.getinfo(1, "S").source
  local path = src:sub(1, 1) == "@" and src:sub(2) or "bench/peers.lua"
  return path:match("^(.*)/[^/]*$") or "."
end

-- repository root, absolute
local ROOT
do
  local p = io.popen("cd '" .. script_dir() .. "/..' && pwd")
  ROOT = p:read("l")
  p:close()
end
package.path = ROOT .. "/?.lua;" .. ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. package.path

local H = require("spec.helper")
local q = H.shell_quote

---------------------------------------------------------------------------
-- options
---------------------------------------------------------------------------

local function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

local function truthy(v) return v ~= nil and v ~= "0" and v ~= "no" and v ~= "false" end

local opt = {
  rounds = tonumber(env("ROUNDS")),
  quick = truthy(env("QUICK")),
  idle10k = truthy(env("IDLE10K")),
  out = env("OUT"),
  clients = env("CLIENTS"),
  workloads = env("WORKLOADS"),
  warm = true,
}
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    local function value()
      i = i + 1
      return (assert(arg[i], a .. " needs a value"))
    end
    if a == "--rounds" then opt.rounds = assert(tonumber(value()), "--rounds: a number")
    elseif a:match("^ROUNDS=") then opt.rounds = assert(tonumber(a:sub(8)), "ROUNDS=: a number")
    elseif a == "--quick" or a == "quick" then opt.quick = true
    elseif a == "--idle10k" or a == "idle10k" then opt.idle10k = true
    elseif a == "--out" then opt.out = value()
    elseif a == "--clients" then opt.clients = value()
    elseif a == "--workloads" then opt.workloads = value()
    elseif a == "--no-warm" then opt.warm = false
    elseif a == "-h" or a == "--help" then
      print("usage: lua5.4 bench/peers.lua [--rounds n] [--quick] [--idle10k] [--out path]"
        .. " [--clients dotnet,node,ours,floor] [--workloads invoke,send,receive,stream,upload,idle] [--no-warm]")
      os.exit(0)
    else
      error("unknown argument " .. a .. " (--help)")
    end
    i = i + 1
  end
end
opt.rounds = math.floor(opt.rounds or (opt.quick and 1 or 3))
assert(opt.rounds >= 1, "rounds >= 1")

-- Parameters of each workload: the defaults, and the quick mode's.
local PARAMS = opt.quick and {
  invoke = "n=5000 warmup=1",
  send = "n=50000 warmup=1",
  receive = "n=50000 warmup=1",
  stream = "n=50000 warmup=1",
  upload = "n=50000 warmup=1",
  idle = "k=200 batch=50",
  idle10k = "k=10000 batch=50",
  hub_warm = 2,
} or {
  invoke = "n=20000 warmup=1.5",
  send = "n=200000 warmup=1.5",
  receive = "n=200000 warmup=1.5",
  stream = "n=200000 warmup=1.5",
  upload = "n=200000 warmup=1.5",
  idle = "k=1000 batch=50",
  idle10k = "k=10000 batch=50",
  hub_warm = 5,
}

local CLIENT_NAMES = { dotnet = ".NET", node = "node", ours = "ours", floor = "floor" }
local ALL_CLIENTS = { "dotnet", "node", "ours", "floor" }
-- the workloads the floor instrument measures; it is not run for the others ("-")
local FLOOR_WORKLOADS = { invoke = true, send = true, receive = true }
local ALL_WORKLOADS = { "invoke", "send", "receive", "stream", "upload", "idle" }

local function list(s, all, what)
  if not s then return all end
  local t = {}
  for w in s:gmatch("[^,%s]+") do
    if w == "lua" then w = "ours" end
    local ok = false
    for _, a in ipairs(all) do if a == w then ok = true end end
    if not ok then error("unknown " .. what .. " " .. w) end
    t[#t + 1] = w
  end
  return t
end
local CLIENTS = list(opt.clients, ALL_CLIENTS, "client")
local WORKLOADS = list(opt.workloads, ALL_WORKLOADS, "workload")
local function has(t, x) for _, v in ipairs(t) do if v == x then return true end end return false end

---------------------------------------------------------------------------
-- shell helpers
---------------------------------------------------------------------------

local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  return (out:gsub("\n$", "")), ok == true
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function log(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
  io.stderr:flush()
end

local DOTNET_ENV = "DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1 "
  .. "DOTNET_CLI_WORKLOAD_UPDATE_NOTIFY_DISABLE=1 DOTNET_GENERATE_ASPNET_CERTIFICATE=false "
  .. "MSBUILDDISABLENODEREUSE=1 DOTNET_CLI_USE_MSBUILD_SERVER=0 UseSharedCompilation=false"

local DOTNET_DIR = ROOT .. "/bench/peers/dotnet"
local DOTNET_DLL = DOTNET_DIR .. "/out/PeerBench.dll"
local NODE_DIR = ROOT .. "/bench/peers/node"
local LUA_PROG = ROOT .. "/bench/peers/lua.lua"

local function build_dir()
  local build = env("BUILD") or "build"
  if build:sub(1, 1) ~= "/" then build = ROOT .. "/" .. build end
  return build
end
local FLOOR_BIN = build_dir() .. "/bench/peer_floor"

local function ensure_peers()
  if has(CLIENTS, "node") then
    local stale = capture("cd " .. q(NODE_DIR) .. " && { test node_modules/.package-lock.json -nt package-lock.json"
      .. " && test node_modules/.package-lock.json -nt package.json && echo fresh; } || true")
    if stale ~= "fresh" then
      log("peers: npm ci in bench/peers/node")
      local out, ok = capture("cd " .. q(NODE_DIR) .. " && npm ci --no-audit --no-fund --loglevel=error 2>&1")
      if not ok then error("npm ci failed:\n" .. H.tail(out, 30)) end
    end
  end
  if has(CLIENTS, "dotnet") then
    local newer = ""
    if exists(DOTNET_DLL) then
      newer = capture("find " .. q(DOTNET_DIR) .. " \\( -name bin -o -name obj -o -name out \\) -prune -o -type f"
        .. " \\( -name '*.cs' -o -name '*.csproj' \\) -newer " .. q(DOTNET_DLL) .. " -print")
    end
    if not exists(DOTNET_DLL) or newer ~= "" then
      log("peers: dotnet build bench/peers/dotnet")
      local out, ok = capture("cd " .. q(ROOT) .. " && env " .. DOTNET_ENV
        .. " dotnet build bench/peers/dotnet -c Release -o bench/peers/dotnet/out"
        .. " --disable-build-servers -nologo -v q -clp:NoSummary 2>&1 </dev/null")
      if not ok or not exists(DOTNET_DLL) then error("dotnet build failed:\n" .. H.tail(out, 30)) end
    end
  end
  if has(CLIENTS, "ours") then
    local build = env("BUILD") or "build"
    if build:sub(1, 1) ~= "/" then build = ROOT .. "/" .. build end
    if not exists(build .. "/lua/signalr/core.so") then
      error(build .. "/lua/signalr/core.so is missing: run make BUILD=" .. (env("BUILD") or "build") .. " all")
    end
  end
  if has(CLIENTS, "floor") and not exists(FLOOR_BIN) then
    error(FLOOR_BIN .. " is missing: run make BUILD=" .. (env("BUILD") or "build") .. " " .. FLOOR_BIN)
  end
end

-- The Lua paths of the in-tree build (scripts/env.sh, absolute).
local function lua_env()
  local build = env("BUILD") or "build"
  if build:sub(1, 1) ~= "/" then build = ROOT .. "/" .. build end
  local path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"
  local cpath = build .. "/lua/?.so;;"
  return "LUA_PATH=" .. q(path) .. " LUA_CPATH=" .. q(cpath)
end

local CLK_TCK = tonumber((capture("getconf CLK_TCK"))) or 100

local function command(client, url, workload, params)
  local prog
  if client == "dotnet" then
    prog = "env " .. DOTNET_ENV .. " dotnet " .. q(DOTNET_DLL)
  elseif client == "node" then
    prog = "node --expose-gc " .. q(NODE_DIR .. "/bench.js")
  elseif client == "floor" then
    prog = q(FLOOR_BIN)
  else
    prog = "env " .. lua_env() .. " lua5.4 " .. q(LUA_PROG)
  end
  return prog .. " " .. q(url) .. " " .. workload .. " " .. params .. " clk_tck=" .. CLK_TCK
end

local ERR_FILE = os.tmpname()

-- Run one client program; returns the RESULT line's key/value table, or
-- nil and an error text.
local function run_client(client, url, workload, params, timeout)
  local cmd = "unset LD_PRELOAD; ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec timeout -k 5 "
    .. (timeout or 300) .. " " .. command(client, url, workload, params) .. " 2>" .. q(ERR_FILE) .. " </dev/null"
  local out = capture(cmd)
  local line
  for l in out:gmatch("[^\n]+") do
    if l:match("^RESULT ") then line = l end
  end
  local stderr = H.read_file(ERR_FILE) or ""
  if not line then
    return nil, "no RESULT line (exit/timeout); stderr:\n" .. H.tail(stderr, 15)
  end
  local r = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
  if r.error then return nil, tostring(r.error) .. "\n" .. H.tail(stderr, 15) end
  if stderr:match("%S") then r._stderr = H.tail(stderr, 5) end
  return r
end

---------------------------------------------------------------------------
-- the run
---------------------------------------------------------------------------

local function median(t)
  local s = {}
  for _, v in ipairs(t) do if type(v) == "number" then s[#s + 1] = v end end
  if #s == 0 then return nil end
  table.sort(s)
  local m = (#s + 1) // 2
  if #s % 2 == 1 then return s[m] end
  return (s[m] + s[m + 1]) / 2
end

local function fd_limit()
  for line in io.lines("/proc/self/limits") do
    local soft = line:match("^Max open files%s+(%d+)")
    if soft then return tonumber(soft) end
  end
end

local started_at = os.date("%Y-%m-%d %H:%M:%S")
local stamp = os.date("%Y-%m-%d-%H%M%S")
local out_path = opt.out or (ROOT .. "/bench/results/peers-" .. stamp .. ".tsv")

ensure_peers()

local function version(cmd)
  return (capture(cmd .. " 2>/dev/null"):match("[^\n]*") or "?")
end
-- The revision our client was built from; "+dirty" when csrc/, binding/ or
-- lua/ differ from it.
local function revision()
  local rev, ok = capture("cd " .. q(ROOT) .. " && git rev-parse --short HEAD 2>/dev/null")
  if not ok or rev == "" then return "unknown (not a git checkout)" end
  local _, clean = capture("cd " .. q(ROOT) .. " && git diff --quiet HEAD -- csrc binding lua 2>/dev/null")
  return rev .. (clean and "" or "+dirty")
end

local machine = {
  cpus = version("nproc"),
  cpu = version("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'"),
  kernel = version("uname -r"),
  dotnet = version("dotnet --version"),
  node = version("node --version"),
  lua = (version("lua5.4 -v"):match("^Lua %S+") or "lua5.4"),
  fds = tostring(fd_limit()),
  load = version("cut -d' ' -f1-3 /proc/loadavg"),
  rev = revision(),
}
log("peers: %s, %s CPUs (%s), fd limit %s; rounds %d%s", started_at, machine.cpus, machine.cpu,
  machine.fds, opt.rounds, opt.quick and " (quick)" or "")

local hub = H.start_hub({})
local url = hub.url .. "/testhub"
log("peers: hub at %s (pid %s)", url, tostring(hub.pid))

if opt.warm then
  log("peers: warming the hub's JIT for %d s", PARAMS.hub_warm)
  local r, err = run_client("ours", url, "warm", "seconds=" .. PARAMS.hub_warm)
  if not r then
    -- any client can warm it; ours may be the one missing
    log("peers: warm-up with our client failed (%s); warming with invokes of the others", err)
    for _, c in ipairs(CLIENTS) do
      if c ~= "ours" then run_client(c, url, "invoke", "n=20000 warmup=" .. PARAMS.hub_warm); break end
    end
  end
end

-- results[workload][client] = { round results... } (tables or false)
local results = {}
local errors = {}
local function record(workload, client, round, r, err)
  results[workload] = results[workload] or {}
  results[workload][client] = results[workload][client] or {}
  results[workload][client][round] = r or false
  if not r then
    errors[#errors + 1] = string.format("%s %s round %s: %s", workload, client, tostring(round), err)
    log("  FAILED: %s", err)
  end
end

local function brief(r)
  if not r then return "failed" end
  local parts = {}
  for _, k in ipairs({ "rate", "p50_us", "p99_us", "cpu_us", "host_cpu_us", "reached", "failed", "kib_per_conn",
    "kib_per_conn_marginal", "open_per_s" }) do
    if r[k] ~= nil then
      parts[#parts + 1] = k .. "=" .. (type(r[k]) == "number" and string.format("%.4g", r[k]) or r[k])
    end
  end
  return table.concat(parts, " ")
end

for round = 1, opt.rounds do
  for _, w in ipairs(WORKLOADS) do
    -- rotate the order each round: no client always runs first
    for j = 0, #CLIENTS - 1 do
      local client = CLIENTS[(j + round - 1) % #CLIENTS + 1]
      if client ~= "floor" or FLOOR_WORKLOADS[w] then
        io.stderr:write(string.format("round %d/%d %-8s %-7s ", round, opt.rounds, w, CLIENT_NAMES[client]))
        local r, err = run_client(client, url, w, PARAMS[w])
        io.stderr:write(brief(r), "\n")
        if r and r._stderr then log("  stderr: %s", r._stderr) end
        record(w, client, round, r, err)
        -- let the hub close what the program left (idle: many connections)
        H.sleep(w == "idle" and 2 or 0.3)
      end
    end
  end
end

if opt.idle10k then
  if fd_limit() < 10300 then
    log("peers: the fd limit is %d; 10,000 connections need more (ulimit -n)", fd_limit())
  end
  -- ours first: ours must show it works; the others may hit limits
  local order = {}
  for _, c in ipairs({ "ours", "node", "dotnet" }) do if has(CLIENTS, c) then order[#order + 1] = c end end
  for _, client in ipairs(order) do
    io.stderr:write(string.format("idle10k %-7s ", CLIENT_NAMES[client]))
    local r, err = run_client(client, url, "idle", PARAMS.idle10k, 900)
    io.stderr:write(brief(r), "\n")
    if r and r._stderr then log("  stderr: %s", r._stderr) end
    record("idle10k", client, 1, r, err)
    H.sleep(5)
  end
end

hub:stop()
os.remove(ERR_FILE)

---------------------------------------------------------------------------
-- the table and the TSV
---------------------------------------------------------------------------

-- rows of the printed table: workload, metric label, result key
local ROWS = {
  { "invoke", "rate/s", "rate" },
  { "invoke", "p50 us", "p50_us" },
  { "invoke", "p99 us", "p99_us" },
  { "invoke", "cpu us/call", "cpu_us" },
  { "invoke", "host cpu us/call", "host_cpu_us" },
  { "send", "rate/s", "rate" },
  { "send", "cpu us/msg", "cpu_us" },
  { "send", "host cpu us/msg", "host_cpu_us" },
  { "receive", "rate/s", "rate" },
  { "receive", "cpu us/msg", "cpu_us" },
  { "receive", "host cpu us/msg", "host_cpu_us" },
  { "stream", "items/s", "rate" },
  { "stream", "cpu us/item", "cpu_us" },
  { "upload", "items/s", "rate" },
  { "upload", "cpu us/item", "cpu_us" },
  { "idle", "KiB/conn", "kib_per_conn" },
  { "idle", "KiB/conn marginal", "kib_per_conn_marginal" },
  { "idle", "reached", "reached" },
  { "idle", "opened/s", "open_per_s" },
  { "idle10k", "KiB/conn", "kib_per_conn" },
  { "idle10k", "KiB/conn marginal", "kib_per_conn_marginal" },
  { "idle10k", "reached", "reached" },
  { "idle10k", "opened/s", "open_per_s" },
}

local function values(workload, client, key)
  local t = {}
  local rounds = results[workload] and results[workload][client] or {}
  for round = 1, opt.rounds do
    local r = rounds[round]
    if r == nil then break end
    t[#t + 1] = r and r[key] or false
  end
  return t, rounds
end

local function med(workload, client, key)
  local vals = values(workload, client, key)
  return median(vals)
end

local function show(v, key)
  if v == nil then return "-" end
  local a = math.abs(v)
  if key == "reached" then return string.format("%d", v) end
  if a >= 1000 then return string.format("%.0f", v) end
  if a >= 100 then return string.format("%.1f", v) end
  if a >= 10 then return string.format("%.2f", v) end
  return string.format("%.3f", v)
end

local function ratio(a, b)
  if a == nil or b == nil or b == 0 then return "-" end
  return string.format("%.2f", a / b)
end

local header = { "workload", "metric", ".NET", "node", "ours", "floor", "ours/.NET", "ours/node", "floor/.NET" }
local widths = { 8, 17, 9, 9, 9, 9, 9, 9, 10 }
local lines = {}
local function row(cells)
  local parts = {}
  for i, c in ipairs(cells) do
    parts[#parts + 1] = i <= 2 and string.format("%-" .. widths[i] .. "s", c)
      or string.format("%" .. widths[i] .. "s", c)
  end
  lines[#lines + 1] = (table.concat(parts, "  "):gsub("%s+$", ""))
end
row(header)
local table_rows = {}
for _, spec in ipairs(ROWS) do
  local w, label, key = spec[1], spec[2], spec[3]
  if results[w] then
    local m = {}
    for _, c in ipairs(ALL_CLIENTS) do m[c] = (results[w][c] and med(w, c, key)) or nil end
    if m.dotnet or m.node or m.ours or m.floor then
      row({ w, label, show(m.dotnet, key), show(m.node, key), show(m.ours, key), show(m.floor, key),
        ratio(m.ours, m.dotnet), ratio(m.ours, m.node), ratio(m.floor, m.dotnet) })
      table_rows[#table_rows + 1] = { w, key, m }
    end
  end
end

local mode = opt.quick and "quick" or "full"
local title = string.format("peers benchmark %s: %s mode, %d round(s), medians; one hub, clients run one at a time;"
  .. " ours at %s", started_at, mode, opt.rounds, machine.rev)
local machine_line = string.format("machine: %s CPU(s) (%s) shared by hub and client, Linux %s; dotnet SDK %s, node %s,"
  .. " %s; load average at start %s", machine.cpus, machine.cpu, machine.kernel, machine.dotnet, machine.node,
  machine.lua, machine.load)
local params_line = string.format("params: invoke %s | send %s | receive %s | stream %s | upload %s | idle %s%s",
  PARAMS.invoke, PARAMS.send, PARAMS.receive, PARAMS.stream, PARAMS.upload, PARAMS.idle,
  opt.idle10k and (" | idle10k " .. PARAMS.idle10k) or "")
local notes = {
  "rate/s, opened/s: higher is better; us and KiB: lower is better.",
  "send: the time runs until the server has processed every message (CountDone == n).",
  "cpu: utime+stime of the whole client process, all threads (/proc/self/stat); host cpu: ours = the",
  "Lua thread, node = the JavaScript main thread (/proc/thread-self/schedstat); .NET has no host thread (-).",
  "floor: a raw-socket measuring instrument (bench/peers/floor.c), not a client: the best the hub and",
  "this machine allow; invoke, send and receive only.",
}

print(title)
print(machine_line)
print(params_line)
print("")
for _, l in ipairs(lines) do print(l) end
print("")
for _, n in ipairs(notes) do print(n) end
if #errors > 0 then
  print("")
  print("failures:")
  for _, e in ipairs(errors) do print("  " .. (e:match("[^\n]*"))) end
end

-- TSV: every round's numbers (every key of each RESULT line), the medians,
-- the ratios of the table's rows.
os.execute("mkdir -p " .. q(out_path:match("^(.*)/[^/]*$") or "."))
local f = assert(io.open(out_path, "w"))
f:write("# ", title, "\n# ", machine_line, "\n# ", params_line, "\n")
f:write("workload\tmetric\tclient\tround\tvalue\n")
local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end
for _, w in ipairs({ "invoke", "send", "receive", "stream", "upload", "idle", "idle10k" }) do
  if results[w] then
    for _, c in ipairs(ALL_CLIENTS) do
      local rounds = results[w][c]
      if rounds then
        local keys = {}
        for round = 1, #rounds do
          local r = rounds[round]
          if r then
            for _, k in ipairs(sorted_keys(r)) do
              if k ~= "client" and k ~= "workload" and k:sub(1, 1) ~= "_" then
                keys[k] = true
                f:write(w, "\t", k, "\t", c, "\t", round, "\t", tostring(r[k]), "\n")
              end
            end
          else
            f:write(w, "\terror\t", c, "\t", round, "\t1\n")
          end
        end
        for _, k in ipairs(sorted_keys(keys)) do
          local m = med(w, c, k)
          if m then f:write(w, "\t", k, "\t", c, "\tmedian\t", string.format("%.6g", m), "\n") end
        end
      end
    end
  end
end
for _, tr in ipairs(table_rows) do
  local w, key, m = tr[1], tr[2], tr[3]
  f:write(w, "\t", key, "\tours/dotnet\tmedian\t", ratio(m.ours, m.dotnet), "\n")
  f:write(w, "\t", key, "\tours/node\tmedian\t", ratio(m.ours, m.node), "\n")
  f:write(w, "\t", key, "\tfloor/dotnet\tmedian\t", ratio(m.floor, m.dotnet), "\n")
end
f:close()
print("")
print("saved " .. out_path)
os.exit(#errors == 0 and 0 or 1, true)
