-- wrk script of the http example (demo.sh, bench.sh): a mix of reads and writes.
-- `wrk ... -s load.lua URL -- KNOWN WRITE_EVERY`: GET /todos/{1..KNOWN} (ids that exist),
-- and every WRITE_EVERY-th request a POST /todos (0: reads only). Every thread counts the
-- responses whose status is not 2xx (wrk itself counts only >= 400); done() prints one
-- RESULT line with the totals, socket errors and latency percentiles (microseconds).
local known, every, n = 1, 4, 0
bad = 0

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  known = tonumber(args[1]) or 1
  every = tonumber(args[2]) or 4
end

function request()
  n = n + 1
  if every > 0 and n % every == 0 then
    return wrk.format("POST", "/todos", { ["Content-Type"] = "application/json" },
      '{"title":"wrk ' .. n .. '"}')
  end
  return wrk.format("GET", "/todos/" .. (n % known + 1))
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local non2xx = 0
  for _, thread in ipairs(threads) do
    non2xx = non2xx + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.0f non2xx=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / summary.duration * 1e6,
    non2xx, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
