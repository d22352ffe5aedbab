-- wrk script: GET /v1/recommend?k=10 for a random MovieLens 100K user per request.
-- Optional pacing: RATE_DELAY_MS (milliseconds each connection waits between requests).
local delay_ms = tonumber(os.getenv("RATE_DELAY_MS") or "0")
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", os.time() * 100 + counter)
end

function init(args)
  math.randomseed(seed)
end

function request()
  return wrk.format("GET", "/v1/recommend?k=10&user=" .. math.random(1, 943))
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("requests %d, errors %d (non-2xx %d), rate %.1f/s, p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n",
    summary.requests, errors, summary.errors.status,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
