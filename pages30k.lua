local n = 30000
request = function() return wrk.format("GET", "/page/" .. math.random(0, n - 1)) end
