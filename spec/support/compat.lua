-- What the specs need to run on every supported Lua (5.3, 5.4).
--
--   local C = require("spec.support.compat")
--   C.has_close                 true where `local x <close>` exists (5.4)
--   C.to_be_closed(v, f)        f(v) with v bound as `local v <close>`
--
-- `local x <close>` is 5.4 syntax; a spec file that used it would not even
-- parse on 5.3, so the block is compiled with load() here. On 5.3, which
-- has no to-be-closed variables, to_be_closed calls v's __close metamethod
-- when f returns or raises, as 5.4 would: what a spec checks there is the
-- __close metamethod the API provides for 5.4 callers.
local M = {}

local close_block = load([[
  local v, f = ...
  local c <close> = v
  return f(c)
]])

M.has_close = close_block ~= nil

function M.to_be_closed(v, f)
  if close_block then return close_block(v, f) end
  local ok, err = pcall(f, v)
  local mt = getmetatable(v)
  if mt and mt.__close then mt.__close(v, not ok and err or nil) end
  if not ok then error(err, 0) end
end

return M
