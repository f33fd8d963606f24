-- wrk script for bench/pipeline.py: POST one normalized inbound message per request.
--
-- Usage: wrk -s bench/inbound.lua URL -- <inbound_token> <run_label> [chats]
-- Every request carries a new external_message_id (<run_label>-<thread>-<counter>), so chatbox
-- stores each one instead of answering "duplicate"; chats spreads the messages over that many chats.
-- done() prints one line, "BENCH_RESULT {json}", that pipeline.py parses.

local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  token = args[1] or "none"
  run_label = args[2] or "run"
  chats = tonumber(args[3] or "16")
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"external_chat_id":"bench-chat-%d","external_message_id":"%s-%d-%d",'
      .. '"text":"benchmark message %d","sender_id":"bench-user","sender_name":"Bench",'
      .. '"chat_type":"direct","sent_at":"2026-01-01T00:00:00Z"}',
    counter % chats, run_label, thread_id, counter, counter
  )
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout
  ))
end
