-- Automatic and stateful reconnect without a server: the builder's checks
-- of the new options, what it hands to the core, the callback registration,
-- and that nothing warns "not supported" any more.
local signalr = require("signalr")
local core = require("signalr.core")

local URL = "http://127.0.0.1:1/hub"

local function errors_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- build() with a logger that records every line; returns conn, lines
local function build_logged(configure)
  local lines = {}
  local b = signalr.builder():with_url(URL)
    :configure_logging("trace", function(level, msg) lines[#lines + 1] = level .. ": " .. msg end)
  configure(b)
  return b:build(), lines
end

local function build_error(configure)
  local b = signalr.builder():with_url(URL):configure_logging("none")
  configure(b)
  local err = errors_of(b.build, b)
  assert.is_true(signalr.is_error(err), "an error object")
  return err
end

local function assert_no_warning(lines)
  for _, line in ipairs(lines) do
    assert.is_nil(line:find("not supported", 1, true), line)
    assert.is_nil(line:find("^warning:"), line)
  end
end

describe("with_automatic_reconnect", function()
  it("builds without a warning with the default delays", function()
    local conn, lines = build_logged(function(b) b:with_automatic_reconnect() end)
    assert.equals("disconnected", conn.state)
    assert_no_warning(lines)
    conn:close()
  end)

  it("takes a list of delays, an empty list, a function and a policy table", function()
    local policy = { next_retry_delay = function(_, ctx) return ctx.previous_retry_count < 2 and 1 or nil end }
    for _, p in ipairs({ { 0, 2, 10, 30 }, { 0.25, 1.5 }, { 0 }, {}, function() return nil end, policy,
                         setmetatable({}, { __index = policy }) }) do
      local conn, lines = build_logged(function(b) b:with_automatic_reconnect(p) end)
      assert_no_warning(lines)
      conn:close()
    end
  end)

  it("refuses negative, NaN, infinite and non-number delays with kind usage", function()
    for _, delays in ipairs({ { -1 }, { 0, -0.5 }, { 0 / 0 }, { math.huge }, { "1" }, { 0, true }, { {} } }) do
      local err = build_error(function(b) b:with_automatic_reconnect(delays) end)
      assert.equals("usage", err.kind)
      assert.matches("with_automatic_reconnect", err.message, 1, true)
    end
  end)

  it("refuses a policy of the wrong type with kind usage", function()
    for _, p in ipairs({ "often", 5, true, { x = 1 }, { 1, 2, x = 3 }, { next_retry_delay = 5 } }) do
      local err = build_error(function(b) b:with_automatic_reconnect(p) end)
      assert.equals("usage", err.kind, tostring(p))
    end
  end)

  it("checks the policy when building, not when configuring", function()
    local b = signalr.builder():with_url(URL):configure_logging("none")
    assert.equals(b, b:with_automatic_reconnect("often"))
    assert.equals("usage", errors_of(b.build, b).kind)
  end)
end)

describe("with_stateful_reconnect", function()
  it("builds without a warning, with and without a buffer size", function()
    for _, opts in ipairs({ false, { buffer_size = 1 }, { buffer_size = 100000 }, {} }) do
      local conn, lines = build_logged(function(b)
        if opts then b:with_stateful_reconnect(opts) else b:with_stateful_reconnect() end
      end)
      assert_no_warning(lines)
      conn:close()
    end
  end)

  it("refuses a buffer size that is not a positive integer with kind usage", function()
    for _, size in ipairs({ 0, -1, 1.5, "100", 0 / 0, math.huge, true }) do
      local err = build_error(function(b) b:with_stateful_reconnect({ buffer_size = size }) end)
      assert.equals("usage", err.kind, tostring(size))
      assert.matches("buffer_size", err.message, 1, true)
    end
  end)

  it("refuses options that are not a table, or unknown ones, with kind usage", function()
    assert.equals("usage", build_error(function(b) b:with_stateful_reconnect(100) end).kind)
    assert.equals("usage", build_error(function(b) b:with_stateful_reconnect("big") end).kind)
    assert.equals("usage", build_error(function(b) b:with_stateful_reconnect({ size = 10 }) end).kind)
  end)

  it("combines with automatic reconnect", function()
    local conn, lines = build_logged(function(b)
      b:with_automatic_reconnect({ 0, 1 }):with_stateful_reconnect({ buffer_size = 4096 })
    end)
    assert_no_warning(lines)
    conn:close()
  end)
end)

describe("core.connection reconnect options", function()
  local function conn_error(opts)
    opts.url = opts.url or URL
    local err = errors_of(core.connection, opts)
    assert.is_true(signalr.is_error(err), "an error object")
    return err
  end

  it("takes true, a list of delays, an empty list and a function", function()
    for _, r in ipairs({ true, false, { 0, 1.5 }, {}, function() end }) do
      local c = core.connection({ url = URL, reconnect = r })
      c:close()
    end
    local c = core.connection({ url = URL, stateful_reconnect = true, stateful_buffer_size = 10 })
    c:close()
  end)

  it("refuses bad values with kind usage", function()
    assert.equals("usage", conn_error({ reconnect = "yes" }).kind)
    assert.equals("usage", conn_error({ reconnect = 3 }).kind)
    assert.equals("usage", conn_error({ reconnect = { -1 } }).kind)
    assert.equals("usage", conn_error({ reconnect = { 0, "2" } }).kind)
    assert.equals("usage", conn_error({ reconnect = { math.huge } }).kind)
    assert.equals("usage", conn_error({ reconnect = { 0 / 0 } }).kind)
    assert.equals("usage", conn_error({ stateful_reconnect = "on" }).kind)
    assert.equals("usage", conn_error({ stateful_buffer_size = -1 }).kind)
    assert.equals("usage", conn_error({ stateful_buffer_size = 1.5 }).kind)
  end)

  it("refuses timeouts the core cannot use with kind usage", function()
    assert.equals("usage", conn_error({ server_timeout = math.huge }).kind)
    assert.equals("usage", conn_error({ keepalive_interval = -1 }).kind)
    assert.equals("usage", conn_error({ protocol = "xml" }).kind)
    assert.equals("usage", conn_error({ transports = 8 }).kind)
  end)
end)

describe("reconnect events", function()
  local conn

  before_each(function()
    conn = signalr.builder():with_url(URL):with_automatic_reconnect():configure_logging("none"):build()
  end)

  after_each(function()
    conn:close()
  end)

  it("register on_reconnecting and on_reconnected handlers that can be removed", function()
    local subs = { conn:on_reconnecting(function() end), conn:on_reconnected(function() end),
                   conn:on_reconnecting(print), conn:on_reconnected(print) }
    for _, sub in ipairs(subs) do
      assert.is_function(sub.remove)
      sub:remove()
      sub:remove()
    end
  end)

  it("refuse a handler that is not a function with kind usage", function()
    assert.equals("usage", errors_of(conn.on_reconnecting, conn, nil).kind)
    assert.equals("usage", errors_of(conn.on_reconnected, conn, "print").kind)
  end)

  it("do not keep a dropped connection alive", function()
    local c = signalr.builder():with_url(URL):with_automatic_reconnect(function() return 0 end)
      :configure_logging("none"):build()
    c:on_reconnecting(function() return c end)
    c:on_reconnected(function() return c end)
    local weak = setmetatable({ c }, { __mode = "v" })
    c = nil
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)

  it("leave send and invoke failing with kind closed when not connected", function()
    assert.equals("closed", errors_of(conn.send, conn, "Echo", 1).kind)
    assert.equals("closed", errors_of(conn.invoke, conn, "Echo", 1).kind)
  end)
end)
