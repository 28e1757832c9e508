-- wrk script: POST one fixed body, count statuses, save a few response bodies, write JSON results.
--
-- Configured by environment (bench.py sets these for each run):
--   BENCH_BODY_FILE     request body (read once)
--   BENCH_CONTENT_TYPE  Content-Type header (default application/json)
--   BENCH_IHCL          optional Inference-Header-Content-Length (KServe V2 binary tensor extension)
--   BENCH_OUT           where done() writes the JSON summary
--   BENCH_SAMPLE_DIR    optional: responses number 1, 10, 100, ... per thread are written here as
--                       t<thread>_<n>_<inference-header-content-length or "">.body for bench.py to verify

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

local f = assert(io.open(env("BENCH_BODY_FILE", ""), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = env("BENCH_CONTENT_TYPE", "application/json")
local ihcl = env("BENCH_IHCL", nil)
if ihcl then wrk.headers["Inference-Header-Content-Length"] = ihcl end

local sample_dir = env("BENCH_SAMPLE_DIR", nil)
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- Per-thread state (globals so that done() can read them with thread:get).
ok = 0
bad = 0
first_bad = ""
local n = 0
local next_sample = 1

function response(status, headers, body)
  n = n + 1
  if status == 200 then
    ok = ok + 1
  else
    bad = bad + 1
    if first_bad == "" then first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 200) end
  end
  if sample_dir and n == next_sample then
    next_sample = next_sample * 10
    local h = ""
    for k, v in pairs(headers) do
      if string.lower(k) == "inference-header-content-length" then h = v end
    end
    local out = io.open(string.format("%s/t%d_%d_%s.body", sample_dir, tid or 0, n, h), "wb")
    if out then
      out:write(body or "")
      out:close()
    end
  end
end

local function jstr(s)
  s = string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local tok, tbad, fb = 0, 0, ""
  for _, t in ipairs(threads) do
    tok = tok + (t:get("ok") or 0)
    tbad = tbad + (t:get("bad") or 0)
    local b = t:get("first_bad") or ""
    if fb == "" then fb = b end
  end
  local e = summary.errors
  local out = assert(io.open(env("BENCH_OUT", "/dev/stdout"), "w"))
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "ok": %d, "bad_status": %d, "first_bad": %s, ' ..
    '"err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d, ' ..
    '"lat_p50_us": %.1f, "lat_p90_us": %.1f, "lat_p99_us": %.1f, "lat_mean_us": %.1f, "lat_max_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, tok, tbad, jstr(fb),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
  out:close()
end
