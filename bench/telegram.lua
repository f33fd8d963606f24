-- wrk script for bench/telegram_ingest.py: POST one Telegram update per request, as Telegram would.
--
-- Usage: wrk -s bench/telegram.lua URL -- <secret_token> <run_number> [chats]
-- Every request carries a new update_id and message_id (run, thread and counter packed into one
-- integer), so chatbox stores each one; chats spreads the messages over that many private chats.
-- done() prints one line, "BENCH_RESULT {json}", that telegram_ingest.py parses.

local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  secret = args[1] or "none"
  run = tonumber(args[2] or "1")
  chats = tonumber(args[3] or "16")
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Telegram-Bot-Api-Secret-Token"] = secret
end

function request()
  counter = counter + 1
  local id = run * 100000000 + thread_id * 10000000 + counter
  local chat = 5500000000 + counter % chats
  local body = string.format(
    '{"update_id":%d,"message":{"message_id":%d,'
      .. '"from":{"id":%d,"is_bot":false,"first_name":"Ada","last_name":"Lovelace","username":"ada_l","language_code":"en"},'
      .. '"chat":{"id":%d,"first_name":"Ada","last_name":"Lovelace","username":"ada_l","type":"private"},'
      .. '"date":1764170418,"text":"benchmark message %d"}}',
    id, id, chat, chat, counter
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
