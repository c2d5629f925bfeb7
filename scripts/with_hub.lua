-- with_hub.lua: start the test hub, run a command with "{hub}" in its
-- arguments replaced by the hub's base URL, stop the hub, exit with the
-- command's status. Used by the demo and the benchmarks.
local helper = require("spec.helper")
local hub = helper.start_hub()
local parts = {}
for i = 1, #arg do
  parts[#parts + 1] = helper.shell_quote((arg[i]:gsub("{hub}", hub.url)))
end
local ok, _, code = os.execute(table.concat(parts, " "))
hub:stop()
os.exit(ok and 0 or (code or 1))
