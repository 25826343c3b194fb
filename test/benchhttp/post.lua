-- wrk script of scripts/bench-http.sh: every request is the same POST of one message, as
-- `bridgehead bench` sends it (senderId "bench", a 256-byte value; 287 bytes of JSON), and at the
-- end one machine-readable line for the harness:
--   RESULT <req/s> <p50 ms> <p99 ms> <non-2xx responses> <socket errors>
-- (wrk counts responses with a status of 400 or more as non-2xx; socket errors are connect, read,
-- write and timeout errors).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"senderId":"bench","value":"' .. string.rep("0123456789abcdef", 16) .. '"}'
-- BENCH_PRIORITY (0-9) sends a Priority header: a message off the default priority is encoded
-- with its priority and goes to its own open segment (a server without priorities ignores it).
local priority = os.getenv("BENCH_PRIORITY")
if priority and priority ~= "" then
  wrk.headers["Priority"] = priority
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
