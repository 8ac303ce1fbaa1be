// The reconciliation page: no framework, no CDN. The API key stays in this
// page (never in a URL sent to the server; a link may carry it in the
// #fragment, which browsers do not send).
(function () {
  "use strict";
  const CHECKS = ["wallet_drift", "reservations_held", "receivables", "payments_unbooked", "refunds", "grants", "recurring_billing", "trial_balance"];
  const $ = (id) => document.getElementById(id);

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function renderChart(daily) {
    const box = $("chart");
    box.textContent = "";
    if (!daily.length) { box.textContent = "No movements in this period."; return; }
    const values = daily.map((d) => Number(d.net));
    const max = Math.max(1, ...values.map(Math.abs));
    const w = 28, gap = 8, h = 160, mid = h / 2;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", String(daily.length * (w + gap) + gap));
    svg.setAttribute("height", String(h + 20));
    daily.forEach((d, i) => {
      const v = Number(d.net), bar = document.createElementNS(ns, "rect");
      const len = Math.abs(v) / max * (mid - 4);
      bar.setAttribute("x", String(gap + i * (w + gap)));
      bar.setAttribute("y", String(v >= 0 ? mid - len : mid));
      bar.setAttribute("width", String(w));
      bar.setAttribute("height", String(Math.max(len, 1)));
      bar.setAttribute("fill", v >= 0 ? "#2e7d32" : "#c62828");
      const title = document.createElementNS(ns, "title");
      title.textContent = d.day + " " + d.currency + ": " + d.net;
      bar.appendChild(title);
      svg.appendChild(bar);
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", String(gap + i * (w + gap)));
      label.setAttribute("y", String(h + 14));
      label.setAttribute("font-size", "9");
      label.textContent = d.day.slice(5);
      svg.appendChild(label);
    });
    box.appendChild(svg);
  }

  function render(r) {
    $("verdict").textContent = r.ok ? "— all passed" : "— " + r.failed_checks.length + " failed";
    $("verdict").className = r.ok ? "pass" : "fail";
    const checks = $("checks");
    checks.textContent = "";
    CHECKS.forEach((name) => {
      const li = document.createElement("li");
      const failed = r.failed_checks.includes(name);
      li.textContent = name + (failed ? " ✗" : " ✓");
      li.className = failed ? "fail" : "pass";
      li.dataset.check = name;
      checks.appendChild(li);
    });
    const body = $("wallets").tBodies[0];
    body.textContent = "";
    r.wallets.forEach((w) => {
      const row = body.insertRow();
      row.dataset.wallet = w.wallet_id;
      if (!w.ok) row.className = "drift";
      cell(row, w.wallet_id, "id");
      cell(row, w.customer_ref);
      cell(row, w.currency);
      [w.opening_balance, w.credits, w.debits, w.closing_balance, w.journal_balance, w.stored_balance]
        .forEach((v) => cell(row, v));
      cell(row, w.drift, "drift-value");
    });
    const trial = $("trial").tBodies[0];
    trial.textContent = "";
    r.trial_balance.forEach((t) => {
      t.accounts.forEach((a) => {
        const row = trial.insertRow();
        cell(row, t.currency); cell(row, a.account); cell(row, a.balance);
      });
      const total = trial.insertRow();
      total.className = t.balanced ? "pass" : "fail";
      cell(total, t.currency); cell(total, "total"); cell(total, t.total);
    });
    renderChart(r.daily || []);
    $("result").hidden = false;
    document.body.dataset.state = "rendered";
  }

  async function run(event) {
    if (event) event.preventDefault();
    const status = $("status");
    const q = new URLSearchParams({ from: $("from").value, to: $("to").value });
    if ($("currency").value.trim()) q.set("currency", $("currency").value.trim().toUpperCase());
    status.textContent = "Running…";
    status.className = "";
    try {
      const res = await fetch("/v1/reports/reconciliation?" + q, {
        headers: { Authorization: "Bearer " + $("key").value.trim(), Accept: "application/json" },
      });
      const body = await res.json();
      if (!res.ok) throw new Error(body.detail || res.statusText);
      const source = body.read_from === "replica"
        ? (body.replica_lag_ms === null ? ", read from a replica whose lag is unknown" : ", read from a replica " + body.replica_lag_ms + " ms behind")
        : "";
      status.textContent = "Generated " + body.generated_at + source +
        (body.provisional ? " (provisional: a transaction of the period may still commit)" : "");
      render(body);
    } catch (e) {
      status.textContent = "The report could not run: " + e.message;
      status.className = "error";
      document.body.dataset.state = "error";
    }
  }

  $("params").addEventListener("submit", run);
  const today = new Date().toISOString().slice(0, 10);
  $("from").value = today;
  $("to").value = today;
  // A link may carry the parameters (and the key) in the fragment.
  const frag = new URLSearchParams(location.hash.slice(1));
  ["key", "from", "to", "currency"].forEach((k) => { if (frag.get(k)) $(k).value = frag.get(k); });
  if (frag.get("key")) run();
})();
