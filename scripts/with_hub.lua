-- with_hub.lua: start the test hub, run a command with "{hub}" in its
-- arguments replaced by the hub's base URL, stop the hub, exit with the
-- command's status. Used by the demo and the benchmarks.
-- HUB_ENV="NAME=value ..." passes extra environment to the hub (e.g. the
-- .NET runtime settings a benchmark wants to compare).
local helper = require("spec.helper")
local env = {}
for k, v in (os.getenv("HUB_ENV") or ""):gmatch("([%w_]+)=(%S+)") do env[k] = v end
local hub = helper.start_hub({ env = env })
local parts = {}
for i = 1, #arg do
  parts[#parts + 1] = helper.shell_quote((arg[i]:gsub("{hub}", hub.url)))
end
local ok, _, code = os.execute(table.concat(parts, " "))
hub:stop()
os.exit(ok and 0 or (code or 1))
