-- wrk script for `make bench`: POST /v1/wallets/{id}/debit (or /v1/transfers).
--   wrk ... -s debit.lua URL -- MODE WALLETS_FILE RUN_ID
-- MODE new:      a fresh Idempotency-Key per request, wallets spread over the file
--      hot:      a fresh key per request, all on the file's first wallet
--      replay:   keys "replay-<i>" already used on wallet i: every answer a replay
--      transfer: a fresh key per request, between two random wallets of one shop
--      hold:     reserve + capture pairs: a hold of 0.01 on a spread wallet, and
--                once its answer is back, a capture of it (each with a fresh key);
--                `pairs` (in the output) counts the captures
--      read:     GET /v1/wallets/{id} on spread wallets (the flooding shop of run 8)
--      pay_external, pay_wallet: payments of 0.01 on open invoices (WALLETS_FILE
--                lines "<api key> <invoice id> <wallet id>"), by bank transfer or
--                from the wallet of the same customer
--      refund:   refunds of 0.01 of a large debit per wallet, spread (WALLETS_FILE
--                lines "<api key> <wallet id> <debit id>"), a fresh key each
--      batch:    POST /v1/batches of 100 debits of 0.01 on random wallets of one
--                quarter of one shop (the connections take different quarters in
--                turn), a fresh key per batch and per item (a request is 100 debits)
-- WALLETS_FILE: lines "<api key> <wallet id>".

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode, file, run = args[1], args[2], args[3]
  wallets = {}
  for line in io.lines(file) do
    local key, id, payer = line:match("(%S+) (%S+) ?(%S*)")
    if mode == "pay_external" or mode == "pay_wallet" then
      local body = '{"method":"bank_transfer","amount":"0.01"}'
      if mode == "pay_wallet" then
        body = '{"method":"wallet","amount":"0.01","wallet_id":"' .. payer .. '"}'
      end
      table.insert(wallets, { id = id, path = "/v1/invoices/" .. id .. "/pay", auth = "Bearer " .. key, body = body })
    elseif mode == "refund" then
      table.insert(wallets, { id = id, path = "/v1/wallets/" .. id .. "/transactions/" .. payer .. "/refund",
                              auth = "Bearer " .. key, body = '{"amount":"0.01"}' })
    else
      table.insert(wallets, { id = id, path = "/v1/wallets/" .. id .. "/debit", auth = "Bearer " .. key })
    end
  end
  -- Transfers stay within a shop: wallets grouped by their key.
  shops, by_key = {}, {}
  for _, w in ipairs(wallets) do
    if not by_key[w.auth] then
      by_key[w.auth] = {}
      table.insert(shops, by_key[w.auth])
    end
    table.insert(by_key[w.auth], w)
  end
  math.randomseed(tid * 7919)
  counter = 0
  held, captures, auth_of = {}, 0, {}
  for _, w in ipairs(wallets) do
    auth_of[w.id] = w.auth
  end
  -- Only this mode reads bodies: wrk parses them only with a response().
  if mode == "hold" then
    response = hold_response
  end
  body = '{"amount":"0.01","category":"usage"}'
end

function request()
  counter = counter + 1
  local w, key
  if mode == "batch" then
    -- 16 slices (a quarter of one shop's wallets each); the 8 connections
    -- of a thread take 8 different slices in turn, as a nightly run splits
    -- its customers, so concurrent batches rarely wait on each other's
    -- wallets.
    local slice = ((counter % 8) * 2 + tid - 1) % 16
    local shop = shops[slice % #shops + 1]
    local part = math.floor(slice / #shops) % 4
    local items = {}
    for i = 1, 100 do
      local w = shop[(math.random(math.floor(#shop / 4)) - 1) * 4 + part + 1] or shop[1]
      items[i] = '{"op":"debit","idempotency_key":"' .. run .. "-" .. tid .. "-" .. counter .. "-" .. i
        .. '","wallet_id":"' .. w.id .. '","amount":"0.01","category":"usage"}'
    end
    return wrk.format("POST", "/v1/batches", {
      ["Authorization"] = shop[1].auth,
      ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter,
      ["Content-Type"] = "application/json",
    }, '{"items":[' .. table.concat(items, ",") .. ']}')
  elseif mode == "read" then
    local w = wallets[(counter * 7919 + tid * 104729) % #wallets + 1]
    return wrk.format("GET", "/v1/wallets/" .. w.id, { ["Authorization"] = w.auth })
  elseif mode == "transfer" then
    local shop = shops[math.random(#shops)]
    local from = math.random(#shop)
    local to = (from + math.random(#shop - 1) - 1) % #shop + 1
    return wrk.format("POST", "/v1/transfers", {
      ["Authorization"] = shop[from].auth,
      ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter,
      ["Content-Type"] = "application/json",
    }, '{"from_wallet_id":"' .. shop[from].id .. '","to_wallet_id":"' .. shop[to].id .. '","amount":"0.01"}')
  elseif mode == "hold" then
    local w = wallets[(counter * 7919 + tid * 104729) % #wallets + 1]
    local hold = table.remove(held)
    if hold then
      return wrk.format("POST", "/v1/reservations/" .. hold.id .. "/capture", {
        ["Authorization"] = hold.auth,
        ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter,
        ["Content-Type"] = "application/json",
      }, "{}")
    end
    return wrk.format("POST", "/v1/wallets/" .. w.id .. "/reservations", {
      ["Authorization"] = w.auth,
      ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter,
      ["Content-Type"] = "application/json",
    }, '{"amount":"0.01","expires_in_seconds":600}')
  elseif mode == "replay" then
    local i = (counter + tid * 499) % #wallets + 1
    w, key = wallets[i], "replay-" .. i
  elseif mode == "hot" then
    w, key = wallets[1], run .. "-" .. tid .. "-" .. counter
  else
    w, key = wallets[(counter * 7919 + tid * 104729) % #wallets + 1], run .. "-" .. tid .. "-" .. counter
  end
  return wrk.format("POST", w.path, {
    ["Authorization"] = w.auth,
    ["Idempotency-Key"] = key,
    ["Content-Type"] = "application/json",
  }, w.body or body)
end

-- A new hold's id goes to the queue of holds to capture; a capture counts.
function hold_response(status, headers, body)
  if status == 201 then
    local id = body:match('^{"id":"([%x%-]+)"')
    local wallet = body:match('"wallet_id":"([%x%-]+)"')
    table.insert(held, { id = id, auth = auth_of[wallet] })
  elseif status == 200 then
    captures = captures + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local captured = 0
  for _, t in ipairs(threads) do
    captured = captured + (t:get("captures") or 0)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"pairs":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, captured))
end
