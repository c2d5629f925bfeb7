-- configure_logging: levels and sinks; contents and tokens only at trace.
local signalr = require("signalr")
local helper = require("spec.helper")

local function run_session(level)
  local lines = {}
  local conn = signalr.builder()
    :with_url(helper.shared_hub().url .. "/testhub", { access_token = "SECRET-TOKEN-XYZ" })
    :configure_logging(level, function(lvl, msg) lines[#lines + 1] = { lvl, msg } end)
    :build()
  conn:start()
  conn:invoke("Echo", "PAYLOAD-CONTENT-123")
  conn:stop()
  local text = {}
  for _, l in ipairs(lines) do text[#text + 1] = l[1] .. ": " .. l[2] end
  return lines, table.concat(text, "\n")
end

describe("logging", function()
  it("logs the lifecycle at debug without contents or tokens", function()
    local lines, text = run_session("debug")
    assert.is_true(#lines > 0)
    assert.matches("connected", text, 1, true)
    assert.is_nil(text:find("SECRET-TOKEN-XYZ", 1, true))
    assert.is_nil(text:find("PAYLOAD-CONTENT-123", 1, true))
    for _, l in ipairs(lines) do assert.is_string(l[1]); assert.is_string(l[2]) end
  end)

  it("logs message contents at trace", function()
    local _, text = run_session("trace")
    assert.matches("PAYLOAD-CONTENT-123", text, 1, true)
  end)

  it("respects the level", function()
    local lines = run_session("error")
    assert.equals(0, #lines)
    lines = run_session("none")
    assert.equals(0, #lines)
  end)
end)
