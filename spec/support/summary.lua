-- busted output handler: the usual terminal output, plus the counts written as one line
-- "passed failed errors pending" to $RELOAD_TEST_SUMMARY, from which scripts/test and .ci/run
-- print the "N passed, N failed" line that CI reads.
return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.utfTerminal")(options)
  busted.subscribe({ "suite", "end" }, function()
    local path = os.getenv("RELOAD_TEST_SUMMARY")
    if path then
      local f = assert(io.open(path, "w"))
      f:write(("%d %d %d %d\n"):format(handler.successesCount, handler.failuresCount,
        handler.errorsCount, handler.pendingsCount))
      f:close()
    end
    return nil, true
  end)
  return handler
end
