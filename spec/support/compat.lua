-- What the specs need to run on every supported Lua (5.1, LuaJIT, 5.3, 5.4).
--
--   local C = require("spec.support.compat")
--   C.has_close                 true where `local x <close>` exists (5.4)
--   C.to_be_closed(v, f)        f(v) with v bound as `local v <close>`
--   C.has_integers              true where integers are a subtype (5.3+)
--   C.lua51                     true on Lua 5.1 and LuaJIT (doubles only)
--   C.is_integer(n)             math.type(n) == "integer", or on 5.1 an
--                               integral number within 2^53
--   C.maxinteger, C.mininteger  the integer extremes exact on this Lua
--   C.pack(...), C.unpack       table.pack/table.unpack, or their 5.1 forms
--
-- `local x <close>` is 5.4 syntax; a spec file that used it would not even
-- parse on 5.3, so the block is compiled with load() here. On 5.3, which
-- has no to-be-closed variables, to_be_closed calls v's __close metamethod
-- when f returns or raises, as 5.4 would: what a spec checks there is the
-- __close metamethod the API provides for 5.4 callers.
local M = {}

-- 5.1's load takes a function only; loadstring takes the text.
local close_block = (loadstring or load)([[
  local v, f = ...
  local c <close> = v
  return f(c)
]])

M.has_close = close_block ~= nil
M.has_integers = math.type ~= nil
M.lua51 = _VERSION == "Lua 5.1"
-- The integer extremes a spec may send: math.maxinteger/mininteger on 5.3+,
-- +-2^53 (the largest a double holds exactly) on 5.1 and LuaJIT.
M.maxinteger = math.maxinteger or 2 ^ 53
M.mininteger = math.mininteger or -2 ^ 53
M.unpack = table.unpack or unpack
M.pack = table.pack or function(...) return { n = select("#", ...), ... } end

function M.is_integer(n)
  if math.type then return math.type(n) == "integer" end
  return type(n) == "number" and n == math.floor(n) and math.abs(n) <= 2 ^ 53
end

function M.to_be_closed(v, f)
  if close_block then return close_block(v, f) end
  local ok, err = pcall(f, v)
  local mt = getmetatable(v)
  if mt and mt.__close then mt.__close(v, not ok and err or nil) end
  if not ok then error(err, 0) end
end

return M
