// The reconciliation page: no framework, no CDN, every asset served by the
// binary. The API key lives in the form's field only: never in a URL, in
// storage or in a log line. Figures are the API's decimal strings, shown
// as given; numbers are only used to size the chart's bars.
(function () {
  "use strict";
  const CHECKS = ["wallet_drift", "reservations_held", "receivables", "payments_unbooked", "refunds", "grants", "recurring_billing", "trial_balance"];
  const LABELS = {
    wallet_drift: "Wallet balances", reservations_held: "Holds", receivables: "Receivables",
    payments_unbooked: "Payments booked", refunds: "Refunds and credit notes", grants: "Grants",
    recurring_billing: "Recurring billing", trial_balance: "Trial balance",
  };
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  let last = null; // the report shown and the query that made it (no key)

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A table cell; `path` is the JSON pointer of the figure it shows.
  function cell(row, text, path, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (path) td.dataset.json = path;
    if (cls) td.className = cls;
    return td;
  }

  function verdict(row, ok) {
    cell(row, ok ? "ok" : "fails", null, ok ? "pass" : "fail");
  }

  function clear(id) {
    const t = $(id);
    const body = t.tBodies[0];
    body.textContent = "";
    return body;
  }

  // Ids the report names (at most 100), as rows a check can link to.
  function idList(box, title, prefix, ids, path, failing) {
    if (!ids.length) return;
    box.appendChild(el("h3", {}, title + " (" + ids.length + ")"));
    const ul = el("ul", { class: "ids" + (failing ? " failing" : "") });
    ids.forEach((id, i) => {
      const li = el("li", { id: prefix + "-" + id, tabindex: "-1" });
      li.appendChild(el("code", { "data-json": path + "/" + i }, id));
      ul.appendChild(li);
    });
    box.appendChild(ul);
  }

  // Per check: where its failing rows are on the page.
  function failures(r) {
    const f = {};
    const add = (check, href, label) => (f[check] = f[check] || []).push({ href, label });
    r.wallets.forEach((w) => { if (!w.ok) add("wallet_drift", "#wallet-" + w.wallet_id, "wallet " + w.wallet_id + " (drift " + w.drift + ")"); });
    r.reservations.forEach((h) => {
      if (!h.ok) add("reservations_held", "#holds-" + h.currency, h.currency + " holds: held " + h.held + ", reserved " + h.wallets_reserved);
      h.overdue_reservation_ids.forEach((id) => add("reservations_held", "#hold-" + id, "hold " + id + " past its expiry"));
    });
    r.invoices.forEach((i) => { if (!i.ok) add("receivables", "#invoices-" + i.currency, i.currency + ": receivables " + i.receivables + ", outstanding " + i.outstanding_total); });
    r.payments.webhook_dead_event_ids.forEach((id) => add("payments_unbooked", "#dead-event-" + id, "provider event " + id + " is dead"));
    r.payments.unposted_invoice_payment_ids.forEach((id) => add("payments_unbooked", "#payment-" + id, "payment " + id + " has no journal transaction"));
    r.refunds.over_refunded_transaction_ids.forEach((id) => add("refunds", "#refunded-movement-" + id, "movement " + id + " refunded beyond it"));
    r.refunds.over_refunded_payment_ids.forEach((id) => add("refunds", "#refunded-payment-" + id, "payment " + id + " refunded beyond it"));
    r.refunds.invoices_not_adding_up.forEach((id) => add("refunds", "#invoice-" + id, "invoice " + id + ": amount_due disagrees"));
    r.grants.wallets_not_matching_grants.forEach((id) => add("grants", "#grant-wallet-" + id, "wallet " + id + " does not match its grants"));
    r.grants.grants_not_adding_up.forEach((id) => add("grants", "#grant-" + id, "grant " + id + " does not add up"));
    r.grants.movements_not_adding_up.forEach((id) => add("grants", "#grant-movement-" + id, "movement " + id + " does not add up"));
    r.grants.overdue_grant_ids.forEach((id) => add("grants", "#overdue-grant-" + id, "grant " + id + " not expired"));
    r.recurring.contracts_behind.forEach((id) => add("recurring_billing", "#behind-contract-" + id, "contract " + id + " is behind"));
    r.recurring.contracts_not_one_invoice_per_period.forEach((id) => add("recurring_billing", "#contract-" + id, "contract " + id + " is not billed once per period"));
    r.trial_balance.forEach((t) => { if (!t.balanced) add("trial_balance", "#trial-" + t.currency, t.currency + " totals " + t.total); });
    return f;
  }

  function renderChecks(r) {
    $("verdict").textContent = r.ok ? "— all passed" : "— " + r.failed_checks.length + " failed";
    $("verdict").className = r.ok ? "pass" : "fail";
    const checks = $("checks");
    checks.textContent = "";
    const f = failures(r);
    CHECKS.forEach((name) => {
      const failed = r.failed_checks.includes(name);
      const li = el("li", { class: failed ? "fail" : "pass", "data-check": name });
      li.appendChild(el("strong", {}, (failed ? "✗ " : "✓ ") + LABELS[name]));
      li.appendChild(el("span", { class: "check-name" }, " (" + name + ")"));
      if (failed && f[name]) {
        const ul = el("ul", { class: "evidence" });
        f[name].forEach((x) => {
          const item = el("li");
          item.appendChild(el("a", { href: x.href, class: "row-link" }, x.label));
          ul.appendChild(item);
        });
        li.appendChild(ul);
      }
      checks.appendChild(li);
    });
  }

  function renderWallets(r) {
    const body = clear("wallets");
    r.wallets.forEach((w, i) => {
      const row = body.insertRow();
      row.id = "wallet-" + w.wallet_id;
      row.tabIndex = -1;
      row.dataset.wallet = w.wallet_id;
      if (!w.ok) row.className = "drift";
      const p = "/wallets/" + i + "/";
      cell(row, w.wallet_id, p + "wallet_id", "id");
      cell(row, w.customer_ref, p + "customer_ref");
      cell(row, w.currency, p + "currency");
      ["opening_balance", "credits", "debits", "closing_balance", "journal_balance", "stored_balance"]
        .forEach((k) => cell(row, w[k], p + k));
      cell(row, w.drift, p + "drift", "drift-value");
      const open = el("button", { type: "button", class: "movements-toggle", "aria-expanded": "false",
        "aria-controls": "movements-" + w.wallet_id }, "Movements");
      open.addEventListener("click", () => toggleMovements(row, w, open));
      row.insertCell().appendChild(open).parentElement.className = "no-print";
    });
  }

  // The day after `day` (YYYY-MM-DD), in UTC.
  function nextDay(day) {
    const d = new Date(day + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + 1);
    return d.toISOString().slice(0, 10);
  }

  async function api(path, accept) {
    const res = await fetch(path, { headers: { Authorization: "Bearer " + $("key").value.trim(), Accept: accept || "application/json" } });
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(detail);
    }
    return res;
  }

  async function toggleMovements(row, w, button) {
    const id = "movements-" + w.wallet_id;
    const open = $(id);
    if (open) {
      open.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    const sub = el("tr", { id, class: "movements" });
    const td = el("td", { colspan: "11" });
    sub.appendChild(td);
    row.after(sub);
    button.setAttribute("aria-expanded", "true");
    const table = el("table", { class: "movement-table" });
    table.createCaption().textContent = "Movements of " + w.wallet_id + " from " + last.report.from + " to " + last.report.to + ", newest first";
    const head = table.createTHead().insertRow();
    ["When", "Type", "Category", "Amount", "Balance after", "Refunded", "Refund of", "From grants"]
      .forEach((h) => head.appendChild(el("th", { scope: "col" }, h)));
    table.createTBody();
    td.appendChild(table);
    const more = el("button", { type: "button", class: "more" }, "More movements");
    const status = el("p", { class: "movements-status", role: "status" });
    td.appendChild(status);
    let after = null;
    const page = async () => {
      more.remove();
      status.textContent = "Loading…";
      const q = new URLSearchParams({ created_after: last.report.from + "T00:00:00Z",
        created_before: nextDay(last.report.to) + "T00:00:00Z", limit: "50" });
      if (after) q.set("starting_after", after);
      try {
        const p = await (await api("/v1/wallets/" + w.wallet_id + "/transactions?" + q)).json();
        p.data.forEach((t) => {
          const tr = table.tBodies[0].insertRow();
          tr.dataset.movement = t.id;
          [t.created_at, t.type, t.category, t.amount, t.balance_after, t.refunded_amount, t.refund_of || ""]
            .forEach((v) => cell(tr, v));
          cell(tr, t.consumptions.map((c) => c.amount + " from " + (c.grant_id || "overdraft")).join("; "));
        });
        status.textContent = table.tBodies[0].rows.length ? "" : "No movement in this period.";
        if (p.has_more && p.data.length) {
          after = p.data[p.data.length - 1].id;
          td.appendChild(more);
        }
        sub.dataset.state = "loaded";
      } catch (e) {
        status.textContent = "The movements could not load: " + e.message;
      }
    };
    more.addEventListener("click", page);
    await page();
  }

  function renderHolds(r) {
    const body = clear("holds");
    const box = $("holds-rows");
    box.textContent = "";
    r.reservations.forEach((h, i) => {
      const row = body.insertRow();
      row.id = "holds-" + h.currency;
      row.tabIndex = -1;
      const p = "/reservations/" + i + "/";
      cell(row, h.currency, p + "currency");
      cell(row, String(h.active), p + "active");
      cell(row, h.held, p + "held");
      cell(row, h.wallets_reserved, p + "wallets_reserved");
      cell(row, String(h.overdue), p + "overdue");
      verdict(row, h.ok);
      idList(box, h.currency + " holds past their expiry", "hold", h.overdue_reservation_ids, p + "overdue_reservation_ids", true);
    });
  }

  function renderInvoices(r) {
    const body = clear("invoices");
    r.invoices.forEach((v, i) => {
      const row = body.insertRow();
      row.id = "invoices-" + v.currency;
      row.tabIndex = -1;
      const p = "/invoices/" + i + "/";
      cell(row, v.currency, p + "currency");
      [["issued", "issued_total"], ["paid", "paid_total"], ["voided", "voided_total"], ["outstanding", "outstanding_total"]]
        .forEach(([n, t]) => {
          const td = cell(row, "");
          td.appendChild(el("span", { "data-json": p + t }, v[t]));
          td.appendChild(el("span", { class: "count", "data-json": p + n }, String(v[n])));
        });
      // Credited in the period: the credit notes of refunds.summary.
      const k = r.refunds.summary.findIndex((x) => x.currency === v.currency);
      const credited = cell(row, "");
      if (k >= 0) {
        const q = "/refunds/summary/" + k + "/";
        credited.appendChild(el("span", { "data-json": q + "credit_notes_total" }, r.refunds.summary[k].credit_notes_total));
        credited.appendChild(el("span", { class: "count", "data-json": q + "credit_notes" }, String(r.refunds.summary[k].credit_notes)));
      }
      cell(row, v.receivables, p + "receivables");
      verdict(row, v.ok);
    });
    const box = $("invoices-rows");
    box.textContent = "";
    idList(box, "Invoices whose amount_due disagrees with their payments, refunds and credit notes", "invoice",
      r.refunds.invoices_not_adding_up, "/refunds/invoices_not_adding_up", true);
  }

  function renderPayments(r) {
    const body = clear("payments");
    const p = r.payments;
    [["Provider events failing (still retried)", String(p.webhook_failing), "/payments/webhook_failing"],
      ["Provider events dead (money not on the books)", String(p.webhook_dead_event_ids.length), null],
      ["Invoice payments without their journal transaction", String(p.unposted_invoice_payments), "/payments/unposted_invoice_payments"]]
      .forEach(([label, value, path]) => {
        const row = body.insertRow();
        row.appendChild(el("th", { scope: "row" }, label));
        cell(row, value, path);
      });
    const refunds = clear("refunds");
    r.refunds.summary.forEach((s, i) => {
      const row = refunds.insertRow();
      const q = "/refunds/summary/" + i + "/";
      cell(row, s.currency, q + "currency");
      [["movement_refunds", "movement_refunds_total"], ["payment_refunds", "payment_refunds_total"], ["credit_notes", "credit_notes_total"]]
        .forEach(([n, t]) => {
          const td = cell(row, "");
          td.appendChild(el("span", { "data-json": q + t }, s[t]));
          td.appendChild(el("span", { class: "count", "data-json": q + n }, String(s[n])));
        });
    });
    if (!r.refunds.summary.length) refunds.insertRow().appendChild(el("td", { colspan: "4" }, "No refund or credit note in this period."));
    const box = $("payments-rows");
    box.textContent = "";
    idList(box, "Dead provider events", "dead-event", p.webhook_dead_event_ids, "/payments/webhook_dead_event_ids", true);
    idList(box, "Invoice payments without their journal transaction", "payment", p.unposted_invoice_payment_ids, "/payments/unposted_invoice_payment_ids", true);
    idList(box, "Movements refunded beyond them", "refunded-movement", r.refunds.over_refunded_transaction_ids, "/refunds/over_refunded_transaction_ids", true);
    idList(box, "Payments refunded beyond them", "refunded-payment", r.refunds.over_refunded_payment_ids, "/refunds/over_refunded_payment_ids", true);
  }

  function renderGrants(r) {
    const body = clear("grants");
    r.grants.summary.forEach((g, i) => {
      const row = body.insertRow();
      const p = "/grants/summary/" + i + "/";
      ["currency", "paid_issued", "granted_issued", "spent", "expired"].forEach((k) => cell(row, g[k], p + k));
    });
    if (!r.grants.summary.length) body.insertRow().appendChild(el("td", { colspan: "5" }, "No grant issued, spent or expired in this period."));
    const box = $("grants-rows");
    box.textContent = "";
    const g = r.grants;
    idList(box, "Wallets whose grants do not match their balance", "grant-wallet", g.wallets_not_matching_grants, "/grants/wallets_not_matching_grants", true);
    idList(box, "Grants that do not add up", "grant", g.grants_not_adding_up, "/grants/grants_not_adding_up", true);
    idList(box, "Movements whose grant consumptions do not add up", "grant-movement", g.movements_not_adding_up, "/grants/movements_not_adding_up", true);
    idList(box, "Grants past their deadline, not expired", "overdue-grant", g.overdue_grant_ids, "/grants/overdue_grant_ids", true);
  }

  function renderRecurring(r) {
    const body = clear("recurring");
    const c = r.recurring;
    [["Periods billed (starting in the period)", String(c.periods_billed), "/recurring/periods_billed"],
      ["Contracts past due", String(c.contracts_past_due.length), null]]
      .forEach(([label, value, path]) => {
        const row = body.insertRow();
        row.appendChild(el("th", { scope: "row" }, label));
        cell(row, value, path);
      });
    const box = $("recurring-rows");
    box.textContent = "";
    idList(box, "Contracts past due", "past-due-contract", c.contracts_past_due, "/recurring/contracts_past_due", false);
    idList(box, "Contracts behind (a period due for a day, not billed)", "behind-contract", c.contracts_behind, "/recurring/contracts_behind", true);
    idList(box, "Contracts not billed exactly once per period", "contract", c.contracts_not_one_invoice_per_period, "/recurring/contracts_not_one_invoice_per_period", true);
  }

  function renderTrial(r) {
    const trial = clear("trial");
    r.trial_balance.forEach((t, i) => {
      const p = "/trial_balance/" + i + "/";
      t.accounts.forEach((a, j) => {
        const row = trial.insertRow();
        cell(row, t.currency, p + "currency");
        cell(row, a.account, p + "accounts/" + j + "/account");
        cell(row, a.balance, p + "accounts/" + j + "/balance");
      });
      const total = trial.insertRow();
      total.id = "trial-" + t.currency;
      total.tabIndex = -1;
      total.className = "total " + (t.balanced ? "pass" : "fail");
      cell(total, t.currency);
      cell(total, "total");
      cell(total, t.total, p + "total");
    });
  }

  // Per currency: credits up, debits down and net as a mark, for every day
  // of the period (days without movement at zero), with a value axis, a
  // title per day for hover, and the same figures in a table for screen
  // readers and print.
  function renderChart(r) {
    const box = $("chart");
    box.textContent = "";
    const days = [];
    for (let d = r.from; d <= r.to; d = nextDay(d)) days.push(d);
    const currencies = [...new Set(r.daily.map((d) => d.currency))];
    if (!currencies.length) { box.appendChild(el("p", {}, "No movements in this period.")); return; }
    currencies.forEach((cur) => {
      const rows = {};
      r.daily.forEach((d, i) => { if (d.currency === cur) rows[d.day] = { d, i }; });
      const sample = r.daily.find((d) => d.currency === cur).net;
      const zero = sample.includes(".") ? "0." + "0".repeat(sample.split(".")[1].length) : "0";
      // The largest day, as the API wrote it: the axis's end labels.
      let top = zero;
      Object.values(rows).forEach(({ d }) => [d.credits, d.debits].forEach((v) => { if (Number(v) > Number(top)) top = v; }));
      const scale = Number(top) || 1;
      const fig = el("figure", { class: "chart", "data-currency": cur });
      fig.appendChild(el("figcaption", { id: "chart-cap-" + cur }, cur + ": credits, debits and net per day, " + r.from + " to " + r.to));
      const left = 70, plot = 200, gap = 2;
      const band = Math.max(6, Math.min(36, Math.floor(900 / days.length)));
      const width = left + days.length * band + 10, height = plot + 40, mid = 10 + plot / 2;
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", "0 0 " + width + " " + height);
      svg.setAttribute("width", String(width));
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-labelledby", "chart-cap-" + cur);
      const add = (tag, attrs, text) => {
        const e = document.createElementNS(SVG, tag);
        Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, String(v)));
        if (text !== undefined) e.textContent = text;
        svg.appendChild(e);
        return e;
      };
      add("line", { x1: left, x2: left, y1: 10, y2: 10 + plot, class: "axis" });
      add("line", { x1: left, x2: width - 10, y1: mid, y2: mid, class: "axis" });
      [[10, top], [mid, zero], [10 + plot, top === zero ? zero : "-" + top]].forEach(([y, label]) => {
        add("line", { x1: left - 4, x2: left, y1: y, y2: y, class: "axis" });
        add("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, label);
      });
      const every = Math.ceil(days.length / 12);
      const half = plot / 2;
      days.forEach((day, i) => {
        const d = rows[day] ? rows[day].d : { credits: zero, debits: zero, net: zero };
        const x = left + i * band + gap;
        const w = Math.max(2, band - 2 * gap);
        const g = document.createElementNS(SVG, "g");
        g.setAttribute("data-day", day);
        const title = document.createElementNS(SVG, "title");
        title.textContent = day + " " + cur + ": credits " + d.credits + ", debits " + d.debits + ", net " + d.net;
        g.appendChild(title);
        const c = Number(d.credits) / scale * half, b = Number(d.debits) / scale * half, n = Number(d.net) / scale * half;
        [[mid - c, c, "credit"], [mid, b, "debit"]].forEach(([y, h, cls]) => {
          const rect = document.createElementNS(SVG, "rect");
          [["x", x], ["y", y], ["width", w], ["height", Math.max(h, 0)], ["class", cls]].forEach(([k, v]) => rect.setAttribute(k, String(v)));
          g.appendChild(rect);
        });
        const mark = document.createElementNS(SVG, "rect");
        [["x", x - 1], ["y", mid - n - 1], ["width", w + 2], ["height", 2], ["class", "net"]].forEach(([k, v]) => mark.setAttribute(k, String(v)));
        g.appendChild(mark);
        svg.appendChild(g);
        if (i % every === 0) add("text", { x: x + w / 2, y: height - 12, "text-anchor": "middle", class: "tick" }, day.slice(5));
      });
      fig.appendChild(svg);
      fig.appendChild(el("p", { class: "legend", "aria-hidden": "true" }, "■ credits (up)  ■ debits (down)  ▬ net"));
      const table = el("table", { class: "chart-data" });
      table.createCaption().textContent = cur + " per day";
      const head = table.createTHead().insertRow();
      ["Day", "Credits", "Debits", "Net"].forEach((h) => head.appendChild(el("th", { scope: "col" }, h)));
      const body = table.createTBody();
      days.forEach((day) => {
        const row = body.insertRow();
        row.dataset.day = day;
        const hit = rows[day];
        cell(row, day);
        ["credits", "debits", "net"].forEach((k) => cell(row, hit ? hit.d[k] : zero, hit ? "/daily/" + hit.i + "/" + k : null));
      });
      fig.appendChild(table);
      box.appendChild(fig);
    });
  }

  function source(r) {
    const from = r.read_from === "replica"
      ? (r.replica_lag_ms === null ? "read from a replica whose lag is unknown" : "read from a replica " + r.replica_lag_ms + " ms behind")
      : "read from the primary";
    return "Generated " + r.generated_at + ", " + from +
      (r.provisional ? " (provisional: a transaction of the period may still commit)" : "");
  }

  function render(r) {
    $("heading").textContent = "Shop " + r.shop_id + " · " + r.from + " to " + r.to + " · " +
      (r.currency || "all currencies") + " · " + source(r);
    renderChecks(r);
    renderWallets(r);
    renderChart(r);
    renderHolds(r);
    renderInvoices(r);
    renderPayments(r);
    renderGrants(r);
    renderRecurring(r);
    renderTrial(r);
    $("result").hidden = false;
    $("actions").hidden = false;
    document.body.dataset.state = "rendered";
  }

  function query() {
    const q = new URLSearchParams({ from: $("from").value, to: $("to").value });
    if ($("currency").value.trim()) q.set("currency", $("currency").value.trim().toUpperCase());
    return q;
  }

  async function run(event) {
    if (event) event.preventDefault();
    const status = $("status");
    const q = query();
    status.textContent = "Running…";
    status.className = "";
    document.body.dataset.state = "running";
    try {
      const body = await (await api("/v1/reports/reconciliation?" + q)).json();
      last = { report: body, query: q };
      status.textContent = source(body);
      render(body);
    } catch (e) {
      status.textContent = "The report could not run: " + e.message;
      status.className = "error";
      document.body.dataset.state = "error";
    }
  }

  // The same bytes as the API's text/csv, named after shop and period.
  async function download() {
    if (!last) return;
    const status = $("status");
    try {
      const blob = await (await api("/v1/reports/reconciliation?" + last.query, "text/csv")).blob();
      const r = last.report;
      const a = el("a", { download: "reconciliation-" + r.shop_id + "-" + r.from + "-to-" + r.to +
        (r.currency ? "-" + r.currency : "") + ".csv" });
      a.href = URL.createObjectURL(blob);
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      document.body.dataset.download = "started";
    } catch (e) {
      status.textContent = "The CSV could not download: " + e.message;
      status.className = "error";
    }
  }

  $("params").addEventListener("submit", run);
  $("download").addEventListener("click", download);
  $("print").addEventListener("click", () => window.print());
  const today = new Date().toISOString().slice(0, 10);
  $("from").value = today;
  $("to").value = today;
})();
