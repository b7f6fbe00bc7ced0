// ATLAS console: REST for actions and snapshots, the /api/v1/stream WebSocket for everything live.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem("atlas.key"), account: null, instruments: {}, symbol: null,
  // `next`: the executions offset to resume from (the stream's resume token), null before the first hello.
  orders: new Map(), balances: {}, books: {}, mids: {}, trades: {}, ws: null, next: null, retry: 0,
};
const CLOSED = new Set(["FILLED", "CANCELED", "REJECTED", "EXPIRED"]);
const TRADES_KEPT = 50;
const SMA_WINDOW = 20;
const HEALTH_EVERY_MS = 5000;
const chart = { api: null, price: null, sma: null, points: {} };  // points: symbol -> Map(second -> price)
const lastMidAt = { ms: 0 };

// -- decimals: strings on the wire; compared and checked as scaled integers (no binary floats) -------------

function scaled(text, places) {
  const m = /^(\d+)(?:\.(\d*))?$/.exec(String(text).trim());
  if (!m) return null;
  const frac = (m[2] || "").padEnd(places, "0");
  if (frac.length > places && /[1-9]/.test(frac.slice(places))) return null;  // finer than we can hold
  return BigInt(m[1] + frac.slice(0, places));
}
function placesOf(step) { const s = String(step); return s.includes(".") ? s.split(".")[1].length : 0; }
function onGrid(value, step) {
  const p = Math.max(placesOf(value), placesOf(step)) + 1;
  const v = scaled(value, p), s = scaled(step, p);
  return v !== null && s !== null && s > 0n && v % s === 0n;
}
function times(a, b) {  // exact product of two decimal strings, as a decimal string
  const pa = placesOf(a), pb = placesOf(b), v = scaled(a, pa) * scaled(b, pb), p = pa + pb;
  const digits = v.toString().padStart(p + 1, "0");
  return p ? `${digits.slice(0, -p)}.${digits.slice(-p)}`.replace(/\.?0+$/, "") : digits;
}

// -- the API ---------------------------------------------------------------------------------------------

async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: { "X-API-Key": state.key, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const doc = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(doc.detail || `HTTP ${response.status}`), { doc });
  return doc;
}

// -- sign in -------------------------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  const doc = await api("GET", "/api/v1/balances");  // 401 for a bad key
  sessionStorage.setItem("atlas.key", key);
  state.account = doc.account_id;
  state.balances = doc.balances;
  state.next = null;
  $("account").textContent = state.account;
  $("signin").hidden = true;
  $("console").hidden = false;
  $("signout").hidden = false;
  const instruments = await api("GET", "/api/v1/instruments");
  state.instruments = Object.fromEntries(instruments.instruments.map((i) => [i.symbol, i]));
  $("symbol").innerHTML = Object.keys(state.instruments).map((s) => `<option>${s}</option>`).join("");
  if (!chart.api) initChart();
  selectSymbol(Object.keys(state.instruments)[0]);
  connect();
  const orders = await api("GET", "/api/v1/orders?status=all");
  for (const o of orders.orders) state.orders.set(o.order_id, o);
  renderOrders();
  renderBalances();
}

function signOut() {
  sessionStorage.removeItem("atlas.key");
  if (state.ws) state.ws.close();
  location.reload();
}

// -- the stream ----------------------------------------------------------------------------------------

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/stream`);
  state.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({
    op: "subscribe", key: state.key, since: state.next,
  }));
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = () => {
    setConnection(false);
    if (state.ws !== ws) return;
    state.retry = Math.min(state.retry + 1, 5);
    setTimeout(connect, 250 * 2 ** state.retry);  // resumes from the last offset: no report is lost
  };
}

function setConnection(up) {
  const el = $("connection");
  el.textContent = up ? "live" : "disconnected";
  el.className = `connection ${up ? "up" : "down"}`;
}

function receive(msg) {
  switch (msg.type) {
    case "hello": state.retry = 0; state.next ??= msg.since; setConnection(true); break;
    case "execution": applyReport(msg.report); state.next = msg.offset + 1; break;
    case "balances": state.balances = msg.balances; renderBalances(); break;
    case "book": state.books[msg.symbol] = msg; if (msg.symbol === state.symbol) renderBook(); break;
    case "mid": if (!lastMidAt.ms) setTimeout(checkHealth, 0);  // the first sign of the venue
      state.mids[msg.symbol] = msg.mid; lastMidAt.ms = Date.now();
      if (msg.symbol === state.symbol) $("mid").textContent = msg.mid; break;
    case "trade": addTrade(msg); break;
    case "error": $("signin-error").textContent = msg.detail; break;
  }
}

function applyReport(r) {
  if (r.symbol === null) return;  // about an order the OMS never took (its terms are unknown)
  const known = state.orders.get(r.order_id) || {};
  state.orders.set(r.order_id, {
    ...known, order_id: r.order_id, client_order_id: r.client_order_id, status: r.status, symbol: r.symbol,
    side: r.side, type: r.type, time_in_force: r.time_in_force, quantity: r.quantity, price: r.price,
    filled_quantity: r.cum_qty, leaves_quantity: r.leaves_qty, avg_price: r.avg_px,
    reject_reason: r.reason || known.reject_reason || null, created_at: known.created_at || r.ts, updated_at: r.ts,
  });
  renderOrders();
}

// -- rendering -----------------------------------------------------------------------------------------

const cell = (text, cls = "") => `<td class="${cls}">${text ?? "-"}</td>`;
const clock = (ms) => new Date(ms).toLocaleTimeString();

function renderOrders() {
  const filter = document.querySelector("input[name=filter]:checked").value;
  const rows = [...state.orders.values()]
    .filter((o) => filter === "all" || (filter === "open") !== CLOSED.has(o.status))
    .sort((a, b) => b.created_at - a.created_at);
  $("orders").tBodies[0].innerHTML = rows.map((o) => `<tr data-order="${o.order_id}">` +
    `<td class="id" title="${o.order_id}">${o.order_id}</td>` +
    `<td class="id" title="${o.client_order_id}">${o.client_order_id}</td>` + cell(o.status, "status") + cell(o.symbol) + cell(o.side, o.side) +
    cell(o.quantity) + cell(o.filled_quantity) + cell(o.leaves_quantity) + cell(o.price) + cell(o.avg_price) +
    cell(clock(o.updated_at)) +
    `<td>${CLOSED.has(o.status) ? "" : `<button class="link amend" type="button">amend</button>` +
      `<button class="link cancel" type="button">cancel</button>`}</td></tr>`).join("");
  $("no-orders").hidden = rows.length > 0;
}

function renderBalances() {
  $("balances").tBodies[0].innerHTML = Object.entries(state.balances).map(([asset, b]) =>
    `<tr data-asset="${asset}">${cell(asset)}${cell(b.available, "available")}${cell(b.reserved, "reserved")}</tr>`).join("");
  updateNotional();
}

function renderBook() {
  const book = state.books[state.symbol];
  if (!book) { $("book").tBodies[0].innerHTML = ""; return; }
  const depth = Math.max(book.bids.length, book.asks.length);
  let html = "";
  for (let i = 0; i < depth; i++) {
    const bid = book.bids[i], ask = book.asks[i];
    // levels are [price, quantity]
    html += "<tr>" + cell(bid?.[1], "bid") + cell(bid?.[0], "bid level") +
      cell(ask?.[0], "ask level") + cell(ask?.[1], "ask") + "</tr>";
  }
  $("book").tBodies[0].innerHTML = html;
}

function addTrade(t) {
  (state.trades[t.symbol] ||= []).unshift(t);
  state.trades[t.symbol].length = Math.min(state.trades[t.symbol].length, TRADES_KEPT);
  chartPoint(t);
  if (t.symbol === state.symbol) { renderTrades(); renderChart(); }
}

// -- the price chart (TradingView's lightweight-charts) -------------------------------------------------

function initChart() {
  const style = getComputedStyle(document.documentElement);
  chart.api = LightweightCharts.createChart($("chart"), {
    autoSize: true, layout: { background: { color: "transparent" }, textColor: style.getPropertyValue("--muted") },
    grid: { vertLines: { visible: false }, horzLines: { color: style.getPropertyValue("--line") } },
    timeScale: { timeVisible: true, secondsVisible: true },
  });
  chart.price = chart.api.addSeries(LightweightCharts.LineSeries, { color: "#3d8bfd", lineWidth: 2 });
  chart.sma = chart.api.addSeries(LightweightCharts.LineSeries, { color: "#e5a13b", lineWidth: 1 });
}

function chartPoint(t) {
  // The last trade price of each second. Plotting needs a Number: display only, nothing is computed from it.
  (chart.points[t.symbol] ||= new Map()).set(Math.floor(t.ts / 1000), Number(t.price));
}

function renderChart() {
  if (!chart.api) return;
  const points = [...(chart.points[state.symbol] || new Map()).entries()].sort((a, b) => a[0] - b[0])
    .map(([time, value]) => ({ time, value }));
  chart.price.setData(points);
  chart.sma.setData(points.slice(SMA_WINDOW - 1).map((p, i) => ({
    time: p.time, value: points.slice(i, i + SMA_WINDOW).reduce((sum, q) => sum + q.value, 0) / SMA_WINDOW })));
}

async function loadTrades(symbol) {
  const doc = await api("GET", `/api/v1/marketdata/${symbol}/trades?limit=100`);
  for (const t of doc.trades.slice().reverse()) {
    if (!(state.trades[symbol] || []).some((x) => x.ts === t.ts && x.price === t.price)) addTrade({ ...t, symbol });
  }
}

// -- footer health -------------------------------------------------------------------------------------

async function checkHealth() {
  let doc = null;
  try { doc = await (await fetch("/readyz")).json(); } catch { doc = null; }
  const exporter = doc?.audit;
  const checks = {
    broker: doc ? doc.checks.broker : false,
    oms: doc ? doc.checks.tables_recovered && doc.checks.partitions_assigned : false,
    venue: Date.now() - lastMidAt.ms < HEALTH_EVERY_MS,  // the venue publishes a mid every tick
    exporter: exporter ? (exporter.ok ?? false) : false,
  };
  for (const [name, ok] of Object.entries(checks)) {
    const el = document.querySelector(`#health [data-check=${name}] b`);
    const off = name === "exporter" && exporter && exporter.enabled === false;
    el.textContent = off ? "off" : ok ? "ok" : "down";
    el.className = off ? "" : ok ? "ok" : "fail";
  }
}

function renderTrades() {
  $("trades").tBodies[0].innerHTML = (state.trades[state.symbol] || []).map((x) =>
    `<tr>${cell(clock(x.ts))}${cell(x.price, x.aggressor)}${cell(x.quantity)}${cell(x.aggressor, x.aggressor)}</tr>`).join("");
}

function selectSymbol(symbol) {
  state.symbol = symbol;
  $("symbol").value = symbol;
  $("depth-symbol").textContent = symbol;
  $("mid").textContent = state.mids[symbol] || "-";
  $("chart-symbol").textContent = symbol;
  renderBook();
  renderTrades();
  renderChart();
  loadTrades(symbol).catch(() => {});  // the recent history; the stream brings the rest
  updateNotional();
}

// -- order entry ---------------------------------------------------------------------------------------

function orderFromForm() {
  const form = new FormData($("order-form"));
  const order = Object.fromEntries(form.entries());
  order.client_order_id = `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  if (order.type === "MARKET" || !order.price) delete order.price;
  return order;
}

function validate(order) {
  const inst = state.instruments[order.symbol];
  if (!inst) return "choose a symbol";
  if (scaled(order.quantity, 12) === null || scaled(order.quantity, 12) <= 0n) return "quantity must be a positive number";
  if (!onGrid(order.quantity, inst.lot_size)) return `quantity must be a multiple of the lot size ${inst.lot_size}`;
  const q = scaled(order.quantity, 12);
  if (q < scaled(inst.min_quantity, 12) || q > scaled(inst.max_quantity, 12))
    return `quantity must be between ${inst.min_quantity} and ${inst.max_quantity}`;
  if (order.type === "LIMIT") {
    if (!order.price) return "a limit order needs a price";
    if (scaled(order.price, 12) === null || scaled(order.price, 12) <= 0n) return "price must be a positive number";
    if (!onGrid(order.price, inst.tick_size)) return `price must be a multiple of the tick size ${inst.tick_size}`;
  }
  return null;
}

function updateNotional() {
  const quantity = $("quantity").value, price = $("price").value || state.mids[state.symbol];
  const ok = quantity && price && scaled(quantity, 12) !== null && scaled(price, 12) !== null;
  $("notional").textContent = ok ? times(quantity, price) : "-";
}

async function submitOrder(event) {
  event.preventDefault();
  const order = orderFromForm();
  const problem = validate(order);
  $("order-error").textContent = problem || "";
  if (problem) return;
  try {
    const placed = await api("POST", "/api/v1/orders", order);
    if (!state.orders.has(placed.order_id)) {
      state.orders.set(placed.order_id, { ...placed, ...order, status: placed.status || "PENDING_NEW",
        filled_quantity: "0", leaves_quantity: order.quantity, avg_price: null,
        created_at: Date.now(), updated_at: Date.now() });
      renderOrders();
    }
  } catch (err) {
    $("order-error").textContent = err.message;
  }
}

async function onBlotterClick(event) {
  const row = event.target.closest("tr[data-order]");
  if (!row) return;
  const orderId = row.dataset.order;
  try {
    if (event.target.classList.contains("cancel")) {
      await api("DELETE", `/api/v1/orders/${orderId}`);
    } else if (event.target.classList.contains("amend")) {
      const price = prompt("New price", state.orders.get(orderId).price || "");
      if (price) await api("PATCH", `/api/v1/orders/${orderId}`, { price });
    }
  } catch (err) {
    $("order-error").textContent = err.message;
  }
}

// -- wiring --------------------------------------------------------------------------------------------

function init() {
  const theme = localStorage.getItem("atlas.theme") || "dark";
  document.documentElement.dataset.theme = theme;
  $("theme").onclick = () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("atlas.theme", next);
  };
  $("signin-form").onsubmit = async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try { await signIn($("api-key").value.trim()); } catch (err) { $("signin-error").textContent = err.message; }
  };
  $("signout").onclick = signOut;
  $("order-form").onsubmit = submitOrder;
  $("symbol").onchange = (e) => selectSymbol(e.target.value);
  $("quantity").oninput = $("price").oninput = updateNotional;
  $("orders").onclick = onBlotterClick;
  document.querySelectorAll("input[name=filter]").forEach((el) => { el.onchange = renderOrders; });
  $("book").onclick = (e) => { if (e.target.classList.contains("level") && e.target.textContent !== "-") {
    $("price").value = e.target.textContent; updateNotional(); } };
  checkHealth();
  setInterval(checkHealth, HEALTH_EVERY_MS);
  if (state.key) signIn(state.key).catch(() => sessionStorage.removeItem("atlas.key"));
}

init();
