// ATLAS console, the Analytics page: the chosen symbol's order flow, spread and mid; the account's orders by status,
// P&L and exposure; the workers' telemetry (orders vs fills, latencies, throughput). Every figure comes from the API.
// Numbers appear only where a chart or a bar length needs one; amounts are shown as the API's strings.
"use strict";

const ANALYTICS_EVERY_MS = 2000;
// The lifecycle's order, to list the statuses the account has in a stable order (labels, not figures).
const STATUS_ORDER = ["PENDING_NEW", "NEW", "PARTIALLY_FILLED", "PENDING_REPLACE", "PENDING_CANCEL", "FILLED",
                      "CANCELED", "EXPIRED", "REJECTED"];
const TELEMETRY_COUNTS = ["submitted", "accepted", "rejected", "canceled", "fills", "filled_orders"];
const analytics = { built: false, timer: null, busy: false, charts: {} };

// -- the page ------------------------------------------------------------------------------------------

const analyticsPanel = (title, body) => `<section class="panel"><h2>${title}</h2>${body}</section>`;

function buildAnalytics() {
  $("analytics").innerHTML = `
    <div class="pages-head">
      <h2>Analytics</h2>
      <label>Symbol <select id="analytics-symbol" data-testid="analytics-symbol"></select></label>
      <span id="analytics-updated" class="muted"></span>
      <span id="analytics-error" class="error" role="alert"></span>
    </div>
    <div class="analytics-grid">` +
    analyticsPanel(`Order flow per minute <span class="muted">buys above zero, sells below</span>`,
                   `<div id="flow-chart" class="page-chart" data-testid="flow-chart"></div>`) +
    analyticsPanel(`Spread and mid <span id="spread-now" class="muted" data-testid="spread-now"></span>`,
                   `<div id="spread-chart" class="page-chart" data-testid="spread-chart"></div>`) +
    analyticsPanel(`Throughput <span class="figures" data-testid="throughput">events/s <b id="events-per-s">-</b>
                      fills/s <b id="fills-per-s">-</b></span>`,
                   `<div id="throughput-chart" class="page-chart" data-testid="throughput-chart"></div>`) +
    analyticsPanel(`Orders by status <span class="muted">this account</span>`,
                   `<div id="orders-by-status" class="bars" data-testid="orders-by-status"></div>`) +
    analyticsPanel(`P&amp;L <b id="analytics-pnl" data-testid="analytics-pnl">-</b> <span id="analytics-pnl-parts" class="muted"></span>`,
                   `<div id="pnl-history" class="page-chart" data-testid="pnl-history"></div>`) +
    analyticsPanel(`Exposure <span class="muted">net <b id="analytics-net" data-testid="net-exposure">-</b></span>`,
                   `<table id="exposure" class="grid" data-testid="exposure"><thead><tr><th>asset</th>
                      <th>holding</th><th>mark</th><th>value</th></tr></thead><tbody></tbody></table>`) +
    analyticsPanel(`Orders vs fills <span id="telemetry-scope" class="muted"></span>`,
                   `<div id="telemetry-counts" class="bars" data-testid="telemetry-counts"></div>`) +
    analyticsPanel(`Submit → ack <span id="latency-ack-count" class="muted"></span>`,
                   `<div id="latency-ack" data-testid="latency-ack"></div>`) +
    analyticsPanel(`Submit → fill <span id="latency-fill-count" class="muted"></span>`,
                   `<div id="latency-fill" data-testid="latency-fill"></div>`) +
    `</div>`;
  $("analytics-symbol").onchange = (e) => selectSymbol(e.target.value);  // the console's symbol: one choice for both
  buildCharts();
  analytics.built = true;
}

function buildCharts() {
  const c = analytics.charts, line = { lineWidth: 2, priceLineVisible: false };
  c.flow = lineChart($("flow-chart"));
  c.buy = c.flow.addSeries(LightweightCharts.HistogramSeries, { color: cssVariable("--buy"), title: "buy", priceLineVisible: false });
  c.sell = c.flow.addSeries(LightweightCharts.HistogramSeries, { color: cssVariable("--sell"), title: "sell", priceLineVisible: false });
  c.spread = lineChart($("spread-chart"), { leftPriceScale: { visible: true } });
  c.bps = c.spread.addSeries(LightweightCharts.LineSeries, { ...line, color: "#e5a13b", title: "bps", priceScaleId: "left",
                                                             priceFormat: { type: "price", precision: 2, minMove: 0.01 } });
  c.mid = c.spread.addSeries(LightweightCharts.LineSeries, { ...line, color: cssVariable("--accent"), title: "mid" });
  c.throughput = lineChart($("throughput-chart"));
  c.events = c.throughput.addSeries(LightweightCharts.LineSeries, { ...line, color: cssVariable("--accent"), title: "events" });
  c.fills = c.throughput.addSeries(LightweightCharts.LineSeries, { ...line, color: cssVariable("--buy"), title: "fills" });
  c.pnl = lineChart($("pnl-history"));
  c.pnlSeries = c.pnl.addSeries(LightweightCharts.BaselineSeries, { baseValue: { type: "price", price: 0 } });
}

function renderSymbolChoice() {
  const select = $("analytics-symbol");
  select.innerHTML = Object.keys(state.instruments).map((s) => `<option>${escapeHtml(s)}</option>`).join("");
  select.value = state.symbol;
  const inst = state.instruments[state.symbol];
  if (!inst) return;
  const format = (step) => ({ type: "price", precision: placesOf(step), minMove: Number(step) });  // axis labels only
  analytics.charts.buy.applyOptions({ priceFormat: format(inst.lot_size) });
  analytics.charts.sell.applyOptions({ priceFormat: format(inst.lot_size) });
  analytics.charts.mid.applyOptions({ priceFormat: format(inst.tick_size) });
}

// -- market: flow, spread and mid --------------------------------------------------------------------------

function flowMinutes(doc) {
  // The worker lists the minutes that saw trades; since it began watching (its first mid), the others had none.
  const byMinute = new Map(doc.flow.map((f) => [f.t, f]));
  const first = Math.min(...[doc.mid[0]?.t, doc.flow[0]?.t].filter((t) => t !== undefined));
  const last = Math.max(Math.floor(Date.now() / 60000) * 60, doc.flow.at(-1)?.t ?? 0);
  const minutes = [];
  for (let t = Math.floor(first / 60) * 60; t <= last; t += 60) minutes.push(byMinute.get(t) || { t, buy: "0", sell: "0" });
  return minutes;
}

function renderMarket(doc) {
  const c = analytics.charts, flow = flowMinutes(doc);
  // Charts need Numbers: display only. Sells are drawn below zero so that both sides of a minute stay visible.
  c.buy.setData(flow.map((f) => ({ time: f.t, value: Number(f.buy) })));
  c.sell.setData(flow.map((f) => ({ time: f.t, value: -Number(f.sell) })));
  c.bps.setData(doc.spread_bps.map((s) => ({ time: s.t, value: Number(s.bps) })));
  c.mid.setData(doc.mid.map((m) => ({ time: m.t, value: Number(m.mid) })));
  c.flow.timeScale().fitContent();  // the whole history in view, as each chart of the page
  c.spread.timeScale().fitContent();
  const mid = doc.mid.at(-1), spread = doc.spread_bps.at(-1);
  $("spread-now").textContent = mid || spread ? `mid ${mid?.mid ?? "-"} · spread ${spread?.bps ?? "-"} bps` : "no market data yet";
}

// -- the account: orders, P&L, exposure ------------------------------------------------------------------

function barRows(items, attribute) {  // items: [{ name, label, count }]; bar lengths relative to the largest
  const top = Math.max(1, ...items.map((i) => Number(i.count) || 0));
  return items.map((i) => `<div class="bar-row" ${attribute}="${escapeHtml(i.name)}"><span class="bar-label">${escapeHtml(i.label)}</span>` +
    `<span class="bar"><i style="width:${((100 * Number(i.count) / top) || 0).toFixed(1)}%"></i></span><b class="bar-count">${escapeHtml(i.count ?? "-")}</b></div>`).join("");
}

function renderOrdersByStatus() {
  const counts = new Map();
  for (const o of state.orders.values()) counts.set(o.status, (counts.get(o.status) || 0) + 1);
  const rank = (s) => (STATUS_ORDER.includes(s) ? STATUS_ORDER.indexOf(s) : STATUS_ORDER.length);
  const items = [...counts].sort((a, b) => rank(a[0]) - rank(b[0])).map(([status, count]) =>
    ({ name: status, label: status.toLowerCase().replace(/_/g, " "), count }));
  $("orders-by-status").innerHTML = items.length ? barRows(items, "data-status") : `<p class="muted">No orders yet.</p>`;
}

function renderPnl() {  // the samples the console takes (state.pnl); the figure in the heading is the API's string
  analytics.charts.pnlSeries.setData(state.pnl);
  analytics.charts.pnl.timeScale().fitContent();
}

function renderExposure(doc) {
  const s = doc?.summary, quote = s && Object.keys(s.total)[0];
  $("analytics-pnl").textContent = s ? inQuote(s.total) : "-";
  $("analytics-pnl-parts").textContent = quote ? `realised ${inQuote(s.realised)}, unrealised ${inQuote(s.unrealised)}` : "";
  $("analytics-net").textContent = s ? inQuote(s.net_exposure) : "-";
  $("exposure").tBodies[0].innerHTML = (doc?.exposures || []).map((e) => `<tr data-asset="${escapeHtml(e.asset)}">` +
    `${cell(e.asset)}${cell(e.total)}${cell(e.mark)}${cell(e.value, "value")}</tr>`).join("");
}

// -- telemetry ---------------------------------------------------------------------------------------------

function telemetryForAdmins() {  // a trader's page says why the workers' figures are not shown
  $("telemetry-scope").textContent = "every account's figures: admins only";
}

function renderTelemetry(doc) {
  const unreachable = doc.unreachable.length ? `, ${doc.unreachable.length} unreachable` : "";
  $("telemetry-scope").textContent = `all accounts, ${doc.workers.length} worker${doc.workers.length === 1 ? "" : "s"}${unreachable}`;
  $("telemetry-counts").innerHTML = barRows(TELEMETRY_COUNTS.map((name) =>
    ({ name, label: name.replace("_", " "), count: doc.counts[name] })), "data-metric");
  renderLatency($("latency-ack"), doc.latency_ms.submit_to_ack);
  renderLatency($("latency-fill"), doc.latency_ms.submit_to_fill);
  renderThroughput(doc.throughput);
}

// A bucket's upper edge, short enough for thirteen columns: "<=1000" -> "1k", ">5000" -> ">5k".
const bucketLabel = (le) => le.replace("<=", "").replace(/000$/, "k");

function renderLatency(el, summary) {
  const figures = ["p50", "p90", "p99", "max"].map((p) =>
    `<div data-percentile="${p}"><span>${p} ms</span><b>${escapeHtml(summary[p] ?? "-")}</b></div>`).join("");
  const top = Math.max(1, ...summary.buckets.map((b) => Number(b.count) || 0));
  const bars = summary.buckets.map((b) => `<div class="bucket" data-le="${escapeHtml(b.le_ms)}" data-count="${Number(b.count)}" ` +
    `title="${Number(b.count)} in ${escapeHtml(b.le_ms)} ms"><span>${Number(b.count) || ""}</span>` +
    `<i style="height:${((100 * Number(b.count) / top) || 0).toFixed(1)}%"></i><span>${escapeHtml(bucketLabel(b.le_ms))}</span></div>`).join("");
  el.dataset.count = summary.count;
  $(`${el.id}-count`).textContent = `${summary.count} orders, buckets by upper edge in ms`;
  el.innerHTML = `<div class="percentiles">${figures}</div>` +
    (bars ? `<div class="histogram">${bars}</div>` : `<p class="muted">No orders measured yet.</p>`);
}

function renderThroughput(t) {
  $("events-per-s").textContent = t.events_per_s;
  $("fills-per-s").textContent = t.fills_per_s;
  // The workers list only the seconds that saw events: the others are zeros, drawn as such over the window.
  const seen = new Map(t.per_second.map((p) => [p.t, p]));
  const end = Math.max(Math.floor(Date.now() / 1000), (t.per_second.at(-1)?.t ?? 0) + 1);
  const events = [], fills = [];
  for (let s = end - t.window_s; s < end; s++) {
    events.push({ time: s, value: seen.get(s)?.events ?? 0 });
    fills.push({ time: s, value: seen.get(s)?.fills ?? 0 });
  }
  analytics.charts.events.setData(events);
  analytics.charts.fills.setData(fills);
  analytics.charts.throughput.timeScale().fitContent();
}

// -- refresh while visible ---------------------------------------------------------------------------------

async function loadInto(path, render) {  // the API's error message, or null once rendered
  let doc;
  try { doc = await api("GET", path); } catch (err) { return err.message; }
  render(doc);
  return null;
}

async function refreshAnalytics() {
  if ($("analytics").hidden || !state.account) {
    clearInterval(analytics.timer);
    analytics.timer = null;
    return;
  }
  renderOrdersByStatus();
  renderExposure(state.positions);
  if (analytics.busy || !state.symbol) return;
  analytics.busy = true;
  const symbol = state.symbol;
  let errors;
  try {
    errors = await Promise.all([
      state.role === "admin" ? loadInto("/api/v1/telemetry", renderTelemetry) : null,  // every account's: admins only
      loadInto(`/api/v1/marketdata/${encodeURIComponent(symbol)}/history`,
               (doc) => { if (symbol === state.symbol) renderMarket(doc); }),  // not a symbol left meanwhile
    ]);
  } finally {
    analytics.busy = false;
  }
  $("analytics-error").textContent = errors.filter(Boolean).join("; ");
  $("analytics-updated").textContent = `updated ${clock(Date.now())}`;
}

views.analytics = {
  show() {
    if (!analytics.built) buildAnalytics();
    if (state.role !== "admin") telemetryForAdmins();
    renderSymbolChoice();
    renderPnl();
    refreshAnalytics();
    analytics.timer ??= setInterval(refreshAnalytics, ANALYTICS_EVERY_MS);
  },
};

hooks.signedIn.push(() => analytics.charts.pnlSeries?.setData([]));  // another account: its own P&L from now on
hooks.positions.push((doc) => {
  if (!analytics.built || $("analytics").hidden) return;
  renderPnl();
  renderExposure(doc);
});
hooks.symbol.push(() => {
  if (!analytics.built) return;
  renderSymbolChoice();
  if (!$("analytics").hidden) refreshAnalytics();
});
hooks.message.push((msg) => {
  if (msg.type === "execution" && analytics.built && !$("analytics").hidden) renderOrdersByStatus();
});
