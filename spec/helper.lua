-- Spec helper: builds and runs the ASP.NET Core test hub (spec/hub).
--
--   local H = require("spec.helper")
--   local hub = H.shared_hub()          -- one server for the whole busted run
--   hub.url                             -- "http://127.0.0.1:PORT"
--   local h2 = H.start_hub{ tls = true } -- a private server
--   h2.https_url; h2:kill(); h2:restart(); h2:stop()
--
-- API
--   H.build()                  build spec/hub once (error with output tail)
--   H.start_hub(opts) -> hub   opts: port, tls, https_port, env, verbose, timeout
--     hub.url, hub.port, hub.https_url, hub.https_port, hub.pid,
--     hub.addresses, hub.log_file, hub.dir
--     hub:stop([timeout]) hub:kill() hub:restart() hub:start() hub:alive()
--     hub:pause() hub:resume() (SIGSTOP/SIGCONT) hub:log()
--     hub:restart() and hub:start() keep the same port(s)
--   H.shared_hub() -> hub      one per process; restarted if not running
--   H.tls_material() -> { ca_file, cert_file, key_file, other_ca_file,
--                         wrong_cert_file, wrong_key_file, dir }
--   H.free_port() -> port      unused loopback port in 20000-32000
--   H.wait_until(pred, timeout=5, interval=0.05) -> pred value | false
--   H.sleep(sec), H.now()      (H.sleep may be replaced, e.g. by signalr.sleep)
--   H.http(method, url, opts) -> status, body   (curl)
--   H.cleanup()                stop all hubs and proxies, remove temp dirs (automatic)
--   H.start_proxy(target_port, opts) -> proxy   a loopback TCP proxy
--     (spec/tools/cutproxy.c, built with cc on demand) that the spec controls:
--     proxy.port, proxy.url_base; proxy:url(path) -> "http://127.0.0.1:PORT" .. path
--     proxy:cut()            reset (RST) every live connection at once
--     proxy:close_all()      close every live connection gracefully (FIN)
--     proxy:refuse(bool)     reset new connections at once / accept again
--     proxy:pause()          freeze: forward nothing, pass no reset, keep sockets
--     proxy:resume()         forward again (and pass on what happened meanwhile)
--     proxy:stats() -> { accepted, live, cut, refused, up, down, paused, refusing,
--                        upgrades, connects, denied }  (connects: CONNECT tunnels made)
--     proxy:auth(user, pass) require Proxy-Authorization: Basic (proxy:auth() none)
--     proxy:map(name, addr)  CONNECT to host `name` goes to addr (default 127.0.0.1)
--     proxy:no_connect(bool) answer CONNECT with 403 / tunnel again
--     proxy:stop()  proxy:alive()  proxy:command(line) -> answer lines
--     opts.port (listen port, default any), opts.target_host ("127.0.0.1")
--   H.proxy_bin() -> path      build the proxy (once; rebuilt when the source changes)
--   H.pump(sec)                drive signalr events for `sec` seconds (signalr.poll)
--   H.wait_for(pred, timeout)  H.wait_until that drives signalr events meanwhile
--   H.mono()                   cheap monotonic seconds (/proc/uptime)
--   H.root, H.hub_dll, H.pid_alive(pid), H.tail(text, n), H.shell_quote(s)
--   H.read_file(path) -> contents | nil, H.mktemp_dir(tag) -> dir (removed by H.cleanup)
--
-- Hubs (see spec/hub/TestHub.cs): /testhub, /statefulhub (stateful
-- reconnect allowed), /wsonly, /sseonly, /lponly, /authhub (token
-- "valid-token"), /clientresulthub, /cookiehub (cookies set at negotiate),
-- /detailedhub (detailed errors).
--
-- Plain Lua 5.4: uses only io.popen / os.execute with sh, curl, openssl,
-- find, mktemp, kill, flock and /proc (no luasocket / luaposix).

local H = {}

---------------------------------------------------------------------------
-- small utilities
---------------------------------------------------------------------------

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.shell_quote = q

-- Run a command, return its stdout (trailing newline stripped) and whether it
-- exited 0.
-- The shell prints the exit status last: 5.1's close() of a popen file
-- does not give it.
local function capture(cmd)
  local p = assert(io.popen("unset LD_PRELOAD; " .. cmd .. "\necho \"__rc=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local rc = out:match("__rc=(%d+)\n?$")
  out = out:gsub("__rc=%d+\n?$", "")
  return (out:gsub("\n$", "")), rc == "0"
end

local function run(cmd)
  local r = os.execute("unset LD_PRELOAD; " .. cmd)
  return r == true or r == 0 -- 5.1 returns the status number
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
H.read_file = read_file

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function tail(text, n)
  if not text then return "" end
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  if lines[#lines] == "" then lines[#lines] = nil end
  local first = math.max(1, #lines - (n or 40) + 1)
  return table.concat(lines, "\n", first)
end
H.tail = tail

local function file_tail(path, n)
  return tail(read_file(path) or "(no output)", n)
end

-- Wall clock in seconds (sub-second resolution).
function H.now()
  local out = capture("date +%s.%N")
  return tonumber(out) or os.time()
end

-- A cheap monotonic clock in seconds (10 ms resolution; /proc/uptime,
-- no process spawned), for tight waiting loops.
function H.mono()
  local f = io.open("/proc/uptime", "r")
  if not f then return H.now() end
  local v = f:read("*n")
  f:close()
  return v or H.now()
end

-- Sleep `sec` seconds. Replaceable (e.g. H.sleep = signalr.sleep).
function H.sleep(sec)
  os.execute("sleep " .. string.format("%.3f", sec))
end

-- Poll `pred` until it returns a truthy value or `timeout` seconds pass.
-- Returns pred's truthy value, or false on timeout.
function H.wait_until(pred, timeout, interval)
  timeout = timeout or 5
  interval = interval or 0.05
  local deadline = H.now() + timeout
  while true do
    local v = pred()
    if v then return v end
    if H.now() >= deadline then return false end
    H.sleep(interval)
  end
end

-- Absolute repository root (this file is <root>/spec/helper.lua).
local function repo_root()
  local src = debug.getinfo(1, "S").source
  local path = src:sub(1, 1) == "@" and src:sub(2) or "spec/helper.lua"
  local dir = path:match("^(.*)/[^/]*$") or "."
  return (capture("cd " .. q(dir) .. "/.. && pwd"))
end

H.root = repo_root()
H.hub_dir = H.root .. "/spec/hub"
H.hub_out = H.hub_dir .. "/out"
H.hub_dll = H.hub_out .. "/TestHub.dll"

-- Process-wide state. busted runs each spec file "insulated": it restores
-- package.loaded (and _G) afterwards, so every file gets a fresh copy of this
-- module. The state lives in the Lua registry, which busted leaves alone, so
-- the build flag, the shared hub and the cleanup hooks are per process.
local REG_KEY = "signalr.spec.helper.state"
local S = debug.getregistry()[REG_KEY]
if not S then
  S = {
    built = false,
    shared = nil,       -- the shared hub
    hubs = {},          -- every hub started (strong refs, for cleanup)
    proxies = {},       -- every proxy started (for cleanup)
    temp_dirs = {},     -- removed at exit
    tls = nil,          -- H.tls_material() result
    -- pid of this Lua process (parent of the popen'ed shell)
    pid = tonumber((capture("echo $PPID"))),
  }
  debug.getregistry()[REG_KEY] = S
end
local MY_PID = S.pid

local function mktemp_dir(tag)
  local dir, ok = capture("mktemp -d -t " .. q("signalr-spec-" .. (tag or "x") .. ".XXXXXX"))
  if not ok or dir == "" then error("mktemp -d failed") end
  S.temp_dirs[#S.temp_dirs + 1] = dir
  return dir
end
H.mktemp_dir = mktemp_dir

---------------------------------------------------------------------------
-- process helpers (/proc based; a zombie counts as dead)
---------------------------------------------------------------------------

local function proc_state(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return nil end
  return stat:match("^.*%)%s+(%S)")
end

local function pid_alive(pid)
  if not pid then return false end
  local st = proc_state(pid)
  return st ~= nil and st ~= "Z" and st ~= "X"
end
H.pid_alive = pid_alive

-- Is `pid` still our TestHub process (guards against pid reuse)?
local function is_hub_pid(pid)
  if not pid_alive(pid) then return false end
  local cmdline = read_file("/proc/" .. pid .. "/cmdline") or ""
  return cmdline:find("TestHub.dll", 1, true) ~= nil
end

local function signal(pid, sig)
  if is_hub_pid(pid) then
    run("kill -" .. sig .. " " .. pid .. " 2>/dev/null")
  end
end

---------------------------------------------------------------------------
-- build
---------------------------------------------------------------------------

local DOTNET_ENV = "DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1 "
  .. "DOTNET_CLI_WORKLOAD_UPDATE_NOTIFY_DISABLE=1 DOTNET_GENERATE_ASPNET_CERTIFICATE=false "
  .. "MSBUILDDISABLENODEREUSE=1 DOTNET_CLI_USE_MSBUILD_SERVER=0 UseSharedCompilation=false"

local function hub_is_stale()
  if not file_exists(H.hub_dll) then return true end
  local cmd = "find " .. q(H.hub_dir)
    .. " \\( -name bin -o -name obj -o -name out \\) -prune -o -type f"
    .. " \\( -name '*.cs' -o -name '*.csproj' -o -name '*.json' -o -name '*.props' -o -name '*.targets' \\)"
    .. " -newer " .. q(H.hub_dll) .. " -print"
  local out = capture(cmd)
  return out ~= ""
end

-- Build the hub (once per process; skipped when out/TestHub.dll is newer
-- than every source). Raises an error with the build output tail on failure.
function H.build()
  if S.built then return end
  if hub_is_stale() then
    local log = os.tmpname()
    local cmd = "cd " .. q(H.root) .. " && "
      .. "flock " .. q(H.hub_dir .. "/.build.lock") .. " "
      .. "env " .. DOTNET_ENV .. " dotnet build spec/hub -c Release -o spec/hub/out"
      .. " --disable-build-servers -nologo -v q -clp:NoSummary"
      .. " > " .. q(log) .. " 2>&1 </dev/null"
    local ok = run(cmd)
    local output = read_file(log) or ""
    os.remove(log)
    if not ok or not file_exists(H.hub_dll) then
      error("building the test hub failed (" .. cmd .. "):\n" .. tail(output, 60), 2)
    end
  end
  S.built = true
end

---------------------------------------------------------------------------
-- TLS material
---------------------------------------------------------------------------

-- Generates (once per process) a self-signed CA, a server certificate for
-- DNS:localhost / IP:127.0.0.1 / IP:::1 signed by it, a second one signed by
-- it for another name only (DNS:wrong.invalid: a host name mismatch on
-- loopback), and an unrelated second CA.
function H.tls_material()
  if S.tls then return S.tls end
  local dir = mktemp_dir("tls")
  local function ossl(args)
    local out, ok = capture("cd " .. q(dir) .. " && openssl " .. args .. " 2>&1")
    if not ok then error("openssl " .. args .. " failed:\n" .. out, 3) end
  end
  local ext = io.open(dir .. "/server.ext", "w")
  local common = "basicConstraints=critical,CA:FALSE\n"
    .. "keyUsage=critical,digitalSignature,keyEncipherment\n"
    .. "extendedKeyUsage=serverAuth\n"
  ext:write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n", common)
  ext:close()
  ext = io.open(dir .. "/wrong.ext", "w")
  ext:write("subjectAltName=DNS:wrong.invalid\n", common)
  ext:close()
  local ca_ext = "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
  ossl("req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.pem"
    .. " -subj '/CN=signalr-lua test CA' " .. ca_ext)
  ossl("req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout other-ca.key -out other-ca.pem"
    .. " -subj '/CN=signalr-lua unrelated CA' " .. ca_ext)
  ossl("req -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr -subj '/CN=localhost'")
  ossl("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 3650"
    .. " -extfile server.ext -out server.pem")
  ossl("req -newkey rsa:2048 -nodes -sha256 -keyout wrong.key -out wrong.csr -subj '/CN=wrong.invalid'")
  ossl("x509 -req -in wrong.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 3650"
    .. " -extfile wrong.ext -out wrong.pem")
  S.tls = {
    dir = dir,
    ca_file = dir .. "/ca.pem",              -- trust this to verify the hub
    cert_file = dir .. "/server.pem",        -- server certificate (leaf only)
    key_file = dir .. "/server.key",         -- its unencrypted PKCS#8 key
    other_ca_file = dir .. "/other-ca.pem",  -- a CA that did NOT sign it
    wrong_cert_file = dir .. "/wrong.pem",   -- signed by the CA, for wrong.invalid only
    wrong_key_file = dir .. "/wrong.key",
  }
  return S.tls
end

---------------------------------------------------------------------------
-- free port
---------------------------------------------------------------------------

local seeded = false
-- A loopback TCP port not in use right now (any state in /proc/net/tcp{,6}),
-- picked in 20000-32000, below Linux's default ephemeral range.
function H.free_port()
  if not seeded then
    math.randomseed(os.time() + (MY_PID or 0) * 7919)
    seeded = true
  end
  local used = {}
  for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local text = read_file(f) or ""
    for port in text:gmatch("\n%s*%d+:%s+%x+:(%x+)") do
      used[tonumber(port, 16)] = true
    end
  end
  for _ = 1, 1000 do
    local p = math.random(20000, 32000)
    if not used[p] then return p end
  end
  error("no free port found")
end

---------------------------------------------------------------------------
-- plain HTTP (curl)
---------------------------------------------------------------------------

-- H.http(method, url, opts) -> status (number, 0 if no response), body
--   opts.body (string), opts.headers ({name = value}), opts.cacert (path),
--   opts.timeout (seconds, default 10)
function H.http(method, url, opts)
  opts = opts or {}
  local out = os.tmpname()
  local cmd = "curl -s --max-time " .. (opts.timeout or 10) .. " -X " .. q(method)
    .. " -o " .. q(out) .. " -w '%{http_code}'"
  for k, v in pairs(opts.headers or {}) do cmd = cmd .. " -H " .. q(k .. ": " .. v) end
  if opts.cacert then cmd = cmd .. " --cacert " .. q(opts.cacert) end
  local inp
  if opts.body then
    inp = os.tmpname()
    local f = assert(io.open(inp, "wb")); f:write(opts.body); f:close()
    cmd = cmd .. " --data-binary @" .. q(inp)
  end
  local status = capture(cmd .. " " .. q(url) .. " 2>/dev/null")
  local body = read_file(out) or ""
  os.remove(out)
  if inp then os.remove(inp) end
  return tonumber(status) or 0, body
end

---------------------------------------------------------------------------
-- hub processes
---------------------------------------------------------------------------

local Hub = {}
Hub.__index = Hub

-- cafile false: do not verify (a hub serving a certificate made to fail)
local function curl_status(url, cafile)
  local cmd = "curl -s -o /dev/null -w '%{http_code}' --max-time 2 "
  if cafile then cmd = cmd .. "--cacert " .. q(cafile) .. " " end
  if cafile == false then cmd = cmd .. "-k " end
  local out = capture(cmd .. q(url) .. " 2>/dev/null")
  return tonumber(out)
end

-- Launch once; returns true, or false + reason (reason "died" when the
-- process exited, e.g. because the port was still in use).
function Hub:_launch(deadline)
  os.remove(self.ready_file)
  local env = {
    "HUB_READY_FILE=" .. q(self.ready_file),
    "HUB_PARENT_PID=" .. tostring(MY_PID or ""),
    "DOTNET_CLI_TELEMETRY_OPTOUT=1", "DOTNET_NOLOGO=1",
    "DOTNET_GENERATE_ASPNET_CERTIFICATE=false",
    "ASPNETCORE_ENVIRONMENT=Production",
  }
  if self.opts.verbose or os.getenv("HUB_VERBOSE") == "1" then env[#env + 1] = "HUB_VERBOSE=1" end
  if self.tls then
    env[#env + 1] = "HUB_TLS_CERT=" .. q(self.tls.cert_file)
    env[#env + 1] = "HUB_TLS_KEY=" .. q(self.tls.key_file)
    local urls = {}
    for i, host in ipairs(self.opts.https_hosts or { "127.0.0.1" }) do
      urls[i] = "https://" .. host .. ":" .. (self.https_port or 0)
    end
    env[#env + 1] = "HUB_HTTPS_URLS=" .. q(table.concat(urls, ";"))
  end
  for k, v in pairs(self.opts.env or {}) do
    env[#env + 1] = k .. "=" .. q(v)
  end
  local urls = "http://127.0.0.1:" .. (self.port or 0)
  local log = io.open(self.log_file, "a")
  if log then
    log:write(string.format("=== start %s %s\n", os.date("%H:%M:%S"), urls))
    log:close()
  end
  -- `env` execs dotnet, so $! is the server's own pid.
  -- -u LD_PRELOAD: the ASan spec run preloads the sanitizer into lua only.
  local cmd = "cd " .. q(H.root) .. " && env -u LD_PRELOAD " .. table.concat(env, " ")
    .. " dotnet " .. q(H.hub_dll) .. " --urls " .. q(urls)
    .. " </dev/null >>" .. q(self.log_file) .. " 2>&1 & echo $!"
  local out = capture(cmd)
  self.pid = tonumber(out)
  if not self.pid then return false, "could not start: " .. out end

  -- wait for the ready file
  while true do
    local text = read_file(self.ready_file)
    if text and text ~= "" then
      local addrs = {}
      for line in text:gmatch("[^\n]+") do addrs[#addrs + 1] = line end
      self.addresses = addrs
      for _, a in ipairs(addrs) do
        if a:match("^http://") and not self.url then self.url = a end
        if a:match("^https://") and not self.https_url then self.https_url = a end
      end
      break
    end
    if not pid_alive(self.pid) then return false, "died" end
    if H.now() > deadline then return false, "timed out waiting for the ready file" end
    H.sleep(0.05)
  end
  if not self.url then return false, "no http address in ready file" end
  self.port = tonumber(self.url:match(":(%d+)$"))
  if self.https_url then self.https_port = tonumber(self.https_url:match(":(%d+)$")) end

  -- wait for /health
  while curl_status(self.url .. "/health") ~= 200 do
    if not pid_alive(self.pid) then return false, "died" end
    if H.now() > deadline then return false, "timed out waiting for /health" end
    H.sleep(0.05)
  end
  if self.https_url then
    local ca = self.tls.cert_file == (S.tls and S.tls.cert_file) and self.tls.ca_file or false
    while curl_status(self.https_url .. "/health", ca) ~= 200 do
      if not pid_alive(self.pid) then return false, "died" end
      if H.now() > deadline then return false, "timed out waiting for https /health" end
      H.sleep(0.05)
    end
  end
  return true
end

function Hub:_start()
  local timeout = self.opts.timeout or 60
  local deadline = H.now() + timeout
  self.url, self.https_url, self.addresses = nil, nil, nil
  local fixed = (self.port or 0) ~= 0 or (self.https_port or 0) ~= 0
  while true do
    local ok, why = self:_launch(deadline)
    if ok then
      self.running = true
      return self
    end
    self:_reap()
    -- A fixed port may still be held briefly (restart): retry until deadline.
    if not (why == "died" and fixed and H.now() < deadline) then
      error("test hub failed to start (" .. why .. "); log " .. self.log_file .. ":\n"
        .. file_tail(self.log_file, 40), 3)
    end
    H.sleep(0.2)
  end
end

-- Wait (up to `timeout` s) for the process to be gone.
function Hub:_wait_exit(timeout)
  local deadline = H.now() + (timeout or 10)
  while pid_alive(self.pid) do
    if H.now() > deadline then return false end
    H.sleep(0.05)
  end
  return true
end

function Hub:_reap()
  if self.pid and pid_alive(self.pid) then
    signal(self.pid, "KILL")
    self:_wait_exit(10)
  end
  self.running = false
end

-- Graceful stop (SIGTERM; SIGKILL after `timeout` s, default 10).
function Hub:stop(timeout)
  if self.pid and pid_alive(self.pid) then
    signal(self.pid, "TERM")
    if not self:_wait_exit(timeout or 10) then
      signal(self.pid, "KILL")
      self:_wait_exit(10)
    end
  end
  self.running = false
  return self
end

-- Hard kill (SIGKILL): connections are dropped without any close handshake.
function Hub:kill()
  if self.pid and pid_alive(self.pid) then
    signal(self.pid, "KILL")
    self:_wait_exit(10)
  end
  self.running = false
  return self
end

-- SIGSTOP / SIGCONT: the server goes silent without closing its sockets.
function Hub:pause()
  if self.pid and pid_alive(self.pid) then signal(self.pid, "STOP") end
  return self
end

function Hub:resume()
  if self.pid and pid_alive(self.pid) then signal(self.pid, "CONT") end
  return self
end

-- Start again on the SAME port(s) (stops first if still running).
-- Fields (url, port, https_url, pid) are updated in place.
function Hub:restart()
  self:stop()
  return self:_start()
end

-- Start again on the same port(s) after kill()/stop(); no-op when running.
function Hub:start()
  if pid_alive(self.pid) then
    if proc_state(self.pid) == "T" then self:resume() end
    return self
  end
  self.running = false
  return self:_start()
end

function Hub:alive()
  return pid_alive(self.pid)
end

-- Server output (stdout/stderr of every start) so far.
function Hub:log()
  return read_file(self.log_file) or ""
end

-- H.start_hub(opts) -> hub
--   opts.port        http port (default 0 = any free port)
--   opts.tls         also listen with HTTPS: true (cert from H.tls_material()),
--                    or { cert_file, key_file, ca_file } (e.g. the wrong_* pair)
--   opts.https_port  https port (default 0)
--   opts.https_hosts addresses the HTTPS endpoint listens on (default
--                    { "127.0.0.1" }; "[::1]" is IPv6 loopback); hub.https_url
--                    is the first, hub.addresses has them all
--   opts.env         extra environment, e.g. { HUB_KEEPALIVE_MS = 500 }
--   opts.verbose     server logs at Information/Debug level
--   opts.timeout     seconds to wait for start (default 60)
function H.start_hub(opts)
  opts = opts or {}
  H.build()
  local dir = mktemp_dir("hub")
  local self = setmetatable({
    opts = opts,
    dir = dir,
    ready_file = dir .. "/ready",
    log_file = dir .. "/hub.log",
    port = opts.port,
    https_port = opts.https_port,
    tls = type(opts.tls) == "table" and opts.tls or (opts.tls and H.tls_material() or nil),
  }, Hub)
  S.hubs[#S.hubs + 1] = self
  return self:_start()
end

-- One hub for the whole busted run (started lazily; restarted on the same
-- port if it is not running, e.g. after a test stopped it).
function H.shared_hub()
  if S.shared and not S.shared:alive() then S.shared:_start() end
  if not S.shared then S.shared = H.start_hub() end
  return S.shared
end


---------------------------------------------------------------------------
-- the loopback proxy (spec/tools/cutproxy.c)
---------------------------------------------------------------------------

local function build_dir()
  local b = os.getenv("BUILD")
  if b == nil or b == "" then b = "build" end
  if b:sub(1, 1) ~= "/" then b = H.root .. "/" .. b end
  return b .. "/spec-tools"
end

-- Build spec/tools/cutproxy.c into $BUILD/spec-tools/ (once per process;
-- again when the source is newer than the binary). Returns the path.
function H.proxy_bin()
  if S.proxy_bin then return S.proxy_bin end
  local dir = build_dir()
  local bin = dir .. "/cutproxy"
  local src = H.root .. "/spec/tools/cutproxy.c"
  if not run("test -x " .. q(bin) .. " && test ! " .. q(src) .. " -nt " .. q(bin)) then
    local log = os.tmpname()
    local cc = os.getenv("CC")
    if cc == nil or cc == "" then cc = "cc" end
    local tmp = bin .. ".tmp" .. tostring(MY_PID)
    local cmd = "mkdir -p " .. q(dir) .. " && " .. cc .. " -O1 -g -std=c99 -Wall -Wextra -o " .. q(tmp)
      .. " " .. q(src) .. " > " .. q(log) .. " 2>&1 && mv -f " .. q(tmp) .. " " .. q(bin)
    local ok = run(cmd)
    local output = read_file(log) or ""
    os.remove(log)
    if not ok then error("building the proxy failed (" .. cmd .. "):\n" .. tail(output, 40), 2) end
  end
  S.proxy_bin = bin
  return bin
end

local Proxy = {}
Proxy.__index = Proxy

local function proxy_sleep()
  os.execute("sleep 0.005")
end

-- Send one command line; wait (up to 5 s) for its "ok <n>" / "error <n>"
-- answer. Returns the answer lines (any "stats ..." line comes first).
function Proxy:command(line)
  if not self.pipe then error("proxy is stopped", 2) end
  self.n = self.n + 1
  local n = self.n
  self.pipe:write(line, "\n")
  self.pipe:flush()
  local deadline = os.time() + 6
  while true do
    local text = read_file(self.out_file) or ""
    local from = self.out_seen
    local lines, done, failed = {}, false, nil
    for l in text:sub(from + 1):gmatch("[^\n]+") do
      lines[#lines + 1] = l
      local tag, num = l:match("^(%a+) (%d+)")
      if tonumber(num) == n and (tag == "ok" or tag == "error") then
        done = true
        if tag == "error" then failed = l end
        break
      end
    end
    if done then
      -- everything up to and including the answer is consumed
      local consumed = 0
      for _, l in ipairs(lines) do consumed = consumed + #l + 1 end
      self.out_seen = from + consumed
      if failed then error("proxy: " .. failed, 2) end
      return lines
    end
    if not pid_alive(self.pid) then
      error("proxy died; its stderr:\n" .. file_tail(self.err_file, 20), 2)
    end
    if os.time() > deadline then error("proxy did not answer '" .. line .. "'", 2) end
    proxy_sleep()
  end
end

function Proxy:cut() self:command("cut"); return self end
function Proxy:close_all() self:command("close"); return self end
function Proxy:pause() self:command("pause"); return self end
function Proxy:resume() self:command("resume"); return self end

function Proxy:refuse(on)
  self:command(on == false and "refuse off" or "refuse on")
  return self
end

-- on: refuse WebSocket upgrades with 403 (a proxy that blocks WebSockets)
function Proxy:no_upgrade(on)
  self:command(on == false and "noupgrade off" or "noupgrade on")
  return self
end

-- Require these credentials from every connection's first request (407
-- otherwise); no arguments: require none.
function Proxy:auth(user, pass)
  if user == nil then
    self:command("auth off")
  else
    self:command("auth " .. user .. ":" .. (pass or ""))
  end
  return self
end

-- CONNECT requests for host `name` go to `addr` (a name only the proxy knows).
function Proxy:map(name, addr)
  self:command("map " .. name .. " " .. (addr or "127.0.0.1"))
  return self
end

-- on: answer every CONNECT "403 Forbidden"
function Proxy:no_connect(on)
  self:command(on == false and "noconnect off" or "noconnect on")
  return self
end

function Proxy:stats()
  local t = {}
  for _, l in ipairs(self:command("stats")) do
    if l:match("^stats ") then
      for k, v in l:gmatch("(%a+)=(%d+)") do t[k] = tonumber(v) end
    end
  end
  return t
end

function Proxy:url(path)
  return self.url_base .. (path or "")
end

function Proxy:alive()
  return self.pipe ~= nil and pid_alive(self.pid)
end

-- Stop the proxy: every live connection is reset.
function Proxy:stop()
  if not self.pipe then return self end
  local pipe = self.pipe
  self.pipe = nil
  pcall(pipe.write, pipe, "quit\n")
  pcall(pipe.flush, pipe)
  -- wait for it to go (the pipe's write end may be inherited by other
  -- children, so end-of-input alone is not enough)
  local deadline = os.time() + 3
  while pid_alive(self.pid) and os.time() <= deadline do proxy_sleep() end
  if pid_alive(self.pid) then run("kill -KILL " .. self.pid .. " 2>/dev/null") end
  pcall(pipe.close, pipe)
  return self
end

-- H.start_proxy(target_port, opts) -> proxy (see the header)
function H.start_proxy(target_port, opts)
  opts = opts or {}
  assert(tonumber(target_port), "start_proxy: target port expected")
  local bin = H.proxy_bin()
  local dir = mktemp_dir("proxy")
  local self = setmetatable({
    dir = dir,
    port_file = dir .. "/port",
    pid_file = dir .. "/pid",
    out_file = dir .. "/out",
    err_file = dir .. "/err",
    target_port = tonumber(target_port),
    n = 0,
    out_seen = 0,
  }, Proxy)
  local args = " -f " .. q(self.port_file)
  if opts.port then args = args .. " -p " .. tonumber(opts.port) end
  if opts.target_host then args = args .. " -h " .. q(opts.target_host) end
  -- `exec`: the proxy's parent is this Lua process, so it notices when we
  -- are gone (end of input, or a new parent).
  local cmd = "unset LD_PRELOAD; echo $$ > " .. q(self.pid_file) .. "; exec " .. q(bin) .. args .. " "
    .. tonumber(target_port) .. " > " .. q(self.out_file) .. " 2> " .. q(self.err_file)
  self.pipe = assert(io.popen(cmd, "w"))
  S.proxies = S.proxies or {}
  S.proxies[#S.proxies + 1] = self
  local deadline = os.time() + 10
  while true do
    local port = tonumber(read_file(self.port_file) or "")
    if port then
      self.port = port
      self.pid = tonumber(read_file(self.pid_file) or "")
      break
    end
    if os.time() > deadline then
      self:stop()
      error("proxy did not start; its stderr:\n" .. file_tail(self.err_file, 20), 2)
    end
    proxy_sleep()
  end
  self.url_base = "http://127.0.0.1:" .. self.port
  return self
end

---------------------------------------------------------------------------
-- driving signalr while waiting
---------------------------------------------------------------------------

local function signalr_poll()
  local ok, signalr = pcall(require, "signalr")
  if ok and type(signalr) == "table" and signalr.poll then return signalr.poll end
  return nil
end

-- Drive signalr events for `sec` seconds (a plain sleep without signalr).
function H.pump(sec)
  local poll = signalr_poll()
  if not poll then return H.sleep(sec) end
  local deadline = H.mono() + sec
  repeat
    local left = deadline - H.mono()
    if left > 0 then poll(math.min(left, 0.05)) end
  until H.mono() >= deadline
end

-- Like H.wait_until, but drives signalr events (signalr.poll) between the
-- checks instead of sleeping. Returns pred's truthy value or false.
function H.wait_for(pred, timeout)
  local poll = signalr_poll()
  if not poll then return H.wait_until(pred, timeout) end
  local deadline = H.mono() + (timeout or 5)
  while true do
    local v = pred()
    if v then return v end
    if H.mono() >= deadline then return false end
    poll(0.02)
  end
end

-- Stop every hub and proxy this process started and remove temp dirs.
-- Idempotent.
function H.cleanup()
  local proxies = S.proxies or {}
  S.proxies = {}
  for _, p in ipairs(proxies) do pcall(p.stop, p) end
  local hubs = S.hubs
  S.hubs, S.shared = {}, nil
  for _, hub in ipairs(hubs) do
    if hub.pid and pid_alive(hub.pid) then signal(hub.pid, "TERM") end
  end
  for _, hub in ipairs(hubs) do
    if hub.pid and pid_alive(hub.pid) then
      if not hub:_wait_exit(5) then hub:kill() end
    end
    hub.running = false
  end
  if os.getenv("SIGNALR_SPEC_KEEP_TMP") ~= "1" then
    for _, d in ipairs(S.temp_dirs) do
      if d:match("/signalr%-spec%-") then run("rm -rf " .. q(d)) end
    end
    S.temp_dirs, S.tls = {}, nil
  end
end

-- Cleanup at exit (installed once per process):
--  * busted publishes 'exit' after the run, before exiting;
--  * the __gc sentinel (kept in the registry) runs when the Lua state is
--    closed: normal end of a plain `lua` script, os.exit(code, true) as
--    busted does on failures;
--  * last resort: each server exits by itself once this process is gone
--    (HUB_PARENT_PID), e.g. after SIGKILL or Ctrl-C of busted.
if not S.hooked then
  S.hooked = true
  local cleanup = H.cleanup
  S.sentinel = setmetatable({}, { __gc = function() pcall(cleanup) end })
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" then
    local okf, subscribe = pcall(function() return busted.subscribe end)
    if okf and type(subscribe) == "function" then
      pcall(subscribe, { "exit" }, function()
        pcall(cleanup)
        return nil, true
      end)
    end
  end
end

return H
