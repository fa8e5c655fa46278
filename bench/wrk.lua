-- wrk script for bench/run.py: one kind of request per run, bounded in requests as well as time.
-- Environment: BENCH_METHOD (GET or POST), BENCH_BODY (a file whose bytes are the JSON body),
-- BENCH_MAX_REQUESTS_PER_THREAD (each thread stops after that many responses).
-- done() prints one line "BENCH_JSON {...}" with the counts and latency percentiles (microseconds).

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY")
if body_file and body_file ~= "" then
  local handle = assert(io.open(body_file, "rb"))
  wrk.body = handle:read("*a")
  handle:close()
  wrk.headers["Content-Type"] = "application/json"
end

local cap = tonumber(os.getenv("BENCH_MAX_REQUESTS_PER_THREAD") or "0")
local answered = 0

function response(status, headers, body)
  answered = answered + 1
  if cap > 0 and answered >= cap then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f, "max_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
