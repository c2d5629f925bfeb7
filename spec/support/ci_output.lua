-- Busted output handler for CI: one line per test, failure details at the
-- end, and "<passed> <failed>" written to $SR_COUNTS_FILE for scripts/test.sh.
-- Pending (skipped) tests count as failed: a skip must never pass CI.
return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.base")()

  local function name(element)
    return handler.getFullName(element)
  end

  handler.testEnd = function(element, parent, status)
    local tag = status == "success" and "ok  " or status == "pending" and "SKIP" or "FAIL"
    io.stdout:write(tag, " ", name(element), "\n")
    io.stdout:flush()
    return nil, true
  end

  local function report(list, label)
    for _, t in ipairs(list) do
      io.stdout:write("\n", label, ": ", t.name or "?", "\n")
      if t.trace and t.trace.short_src then
        io.stdout:write("  at ", t.trace.short_src, ":", tostring(t.trace.currentline), "\n")
      end
      io.stdout:write("  ", tostring(t.message), "\n")
    end
  end

  handler.suiteEnd = function()
    report(handler.failures, "FAILURE")
    report(handler.errors, "ERROR")
    report(handler.pendings, "SKIPPED (counts as failed)")
    local passed = #handler.successes
    local failed = #handler.failures + #handler.errors + #handler.pendings
    io.stdout:write(string.format("\nspecs: %d passed, %d failed\n", passed, failed))
    local file = os.getenv("SR_COUNTS_FILE")
    if file then
      local f = assert(io.open(file, "w"))
      f:write(passed, " ", failed, "\n")
      f:close()
    end
    return nil, true
  end

  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  return handler
end
