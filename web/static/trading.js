// ATLAS console, the trading view: order entry with its risk preview, blotter, balances and P&L, depth, trades, chart.
"use strict";

const SMA_WINDOW = 20;
const TRADES_KEPT = 500;
const PREVIEW_DELAY_MS = 150;
const POSITIONS_EVERY_MS = 3000;
const chart = { api: null, price: null, sma: null, points: {} };  // points: symbol -> Map(second -> price)
const pnl = { chart: null, series: null };  // the P&L-over-time chart of state.pnl
let previewTimer = null, previewSeq = 0;

// -- orders --------------------------------------------------------------------------------------------

function applyReport(r) {
  if (r.symbol === null) return;  // about an order the OMS never took (its terms are unknown)
  const known = state.orders.get(r.order_id) || {};
  // A report sent again after a restart (poss_dup) or read again comes after newer ones: keep the newest.
  if (known.seq !== undefined && r.seq <= known.seq) return;
  state.orders.set(r.order_id, {
    ...known, seq: r.seq, order_id: r.order_id, client_order_id: r.client_order_id, status: r.status, symbol: r.symbol,
    side: r.side, type: r.type, time_in_force: r.time_in_force, quantity: r.quantity, price: r.price,
    filled_quantity: r.cum_qty, leaves_quantity: r.leaves_qty, avg_price: r.avg_px,
    reject_reason: r.reason || known.reject_reason || null, created_at: known.created_at || r.ts, updated_at: r.ts,
  });
  renderOrders();
}

function renderOrders() {
  const filter = document.querySelector("input[name=filter]:checked").value;
  const rows = [...state.orders.values()]
    .filter((o) => filter === "all" || (filter === "open") !== CLOSED.has(o.status))
    .sort((a, b) => b.created_at - a.created_at);
  // Two lines in a cell (order and client id, limit and average price) keep the blotter narrow enough for 1280 px.
  const two = (top, below, cls) => `<td class="${cls}"><div class="top">${escapeHtml(top ?? "-")}</div>` +
    `<div class="below muted">${escapeHtml(below ?? "-")}</div></td>`;
  $("orders").tBodies[0].innerHTML = rows.map((o) => `<tr data-order="${escapeHtml(o.order_id)}">` +
    `<td class="ids" title="${escapeHtml(o.order_id)} / ${escapeHtml(o.client_order_id)}">` +
    `<div class="id">${escapeHtml(o.order_id)}</div><div class="id muted">${escapeHtml(o.client_order_id)}</div></td>` +
    `<td class="status" title="${escapeHtml(o.reject_reason || "")}">${escapeHtml(o.status)}</td>` + cell(o.symbol) +
    cell(o.side, o.side) + cell(trim(o.quantity)) + cell(trim(o.filled_quantity)) + cell(trim(o.leaves_quantity)) +
    two(o.price, o.avg_price, "px") + cell(clock(o.updated_at)) +
    `<td class="actions">${CLOSED.has(o.status) ? "" :
      `<button class="link amend" type="button" title="amend the price" aria-label="amend">✎</button>` +
      `<button class="link cancel" type="button" title="cancel" aria-label="cancel">✕</button>`}</td></tr>`).join("");
  $("no-orders").hidden = rows.length > 0;
  $("orders").hidden = rows.length === 0;  // no empty table: the panels below move up
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

// -- balances, exposure and P&L ---------------------------------------------------------------------------

function renderBalances() {
  const values = Object.fromEntries((state.positions?.exposures || []).map((e) => [e.asset, e.value]));
  $("balances").tBodies[0].innerHTML = Object.entries(state.balances).map(([asset, b]) =>
    `<tr data-asset="${escapeHtml(asset)}" title="value ${escapeHtml(trim(values[asset]) ?? "-")}">${cell(asset)}` +
    `${cell(trim(b.available), "available")}${cell(trim(b.reserved), "reserved")}</tr>`).join("");
  renderPairBalances();
}

let positionsBusy = false;

async function refreshPositions() {
  // One request at a time (a burst of fills asks once): the owner of the account answers it beside its OMS.
  if (!state.account || positionsBusy) return;
  positionsBusy = true;
  const account = state.account;
  let doc, limits;
  try {
    [doc, limits] = await Promise.all([api("GET", "/api/v1/positions"), api("GET", "/api/v1/limits")]);
  } catch { return; } finally { positionsBusy = false; }
  if (account !== state.account) return;  // an answer about the account signed out of
  state.positions = doc;
  state.limits = limits;
  renderBalances();
  $("positions").tBodies[0].innerHTML = doc.positions.map((p) => `<tr data-symbol="${escapeHtml(p.symbol)}">` +
    `${cell(p.symbol)}${cell(trim(p.quantity), "quantity")}${cell(p.avg_price)}<td class="pnl">` +
    `<div class="realised">${escapeHtml(p.realised)}</div><div class="unrealised muted">${escapeHtml(p.unrealised ?? "-")}</div>` +
    `</td></tr>`).join("");
  const total = doc.summary.total, quote = Object.keys(total)[0];
  $("pnl-total").textContent = inQuote(total);
  $("pnl-realised").textContent = inQuote(doc.summary.realised);
  $("pnl-unrealised").textContent = inQuote(doc.summary.unrealised);
  $("net-exposure").textContent = inQuote(doc.summary.net_exposure);
  if (quote) {
    // Display only: the chart needs a Number.
    const point = { time: Math.floor(Date.now() / 1000), value: Number(total[quote]) };
    state.pnl = state.pnl.filter((p) => p.time < point.time).concat([point]);
    pnl.series?.setData(state.pnl);
    fire("positions", doc);
  }
}

// -- market: depth, trades, price chart -------------------------------------------------------------------

function renderBook() {
  const book = state.books[state.symbol];
  $("halted").hidden = !book?.halted;
  if (!book) { $("book").tBodies[0].innerHTML = ""; return; }
  const depth = Math.max(book.bids.length, book.asks.length);
  const top = [...book.bids, ...book.asks].reduce((m, l) => Math.max(m, Number(l[1])), 0) || 1;  // bar widths only
  const bar = (level, side) => level ? ` style="--bar:${Math.round(100 * Number(level[1]) / top) || 0}%"` : "";
  let html = "";
  for (let i = 0; i < depth; i++) {
    const bid = book.bids[i], ask = book.asks[i];
    // levels are [price, quantity]
    html += "<tr>" + `<td class="bid qty"${bar(bid, "bid")}>${escapeHtml(bid?.[1] ?? "-")}</td>` + cell(bid?.[0], "bid level") +
      cell(ask?.[0], "ask level") + `<td class="ask qty"${bar(ask, "ask")}>${escapeHtml(ask?.[1] ?? "-")}</td>` + "</tr>";
  }
  $("book").tBodies[0].innerHTML = html;
}

function addTrade(t) {
  const list = (state.trades[t.symbol] ||= []);
  list.unshift(t);
  list.length = Math.min(list.length, TRADES_KEPT);
  chartPoint(t);
  if (t.symbol === state.symbol) { renderTrades(); renderChart(); }
}

function renderTrades() {
  const chosen = $("trades-limit").value;
  const list = state.trades[state.symbol] || [];
  $("trades").tBodies[0].innerHTML = (chosen === "all" ? list : list.slice(0, Number(chosen))).map((x) =>
    `<tr>${cell(clock(x.ts))}${cell(x.price, x.aggressor)}${cell(x.quantity)}${cell(x.aggressor, x.aggressor)}</tr>`).join("");
}

function initCharts() {
  chart.api = lineChart($("chart"));
  chart.price = chart.api.addSeries(LightweightCharts.LineSeries, { color: "#3d8bfd", lineWidth: 2 });
  chart.sma = chart.api.addSeries(LightweightCharts.LineSeries, { color: "#e5a13b", lineWidth: 1 });
  pnl.chart = lineChart($("pnl-chart"));
  pnl.series = pnl.chart.addSeries(LightweightCharts.BaselineSeries, { baseValue: { type: "price", price: 0 } });
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
  $("chart-empty").hidden = points.length > 0;
  chart.sma.setData(points.slice(SMA_WINDOW - 1).map((p, i) => ({
    time: p.time, value: points.slice(i, i + SMA_WINDOW).reduce((sum, q) => sum + q.value, 0) / SMA_WINDOW })));
}

async function loadTrades(symbol) {
  const doc = await api("GET", `/api/v1/marketdata/${symbol}/trades?limit=100`);
  for (const t of doc.trades.slice().reverse()) {
    if (!(state.trades[symbol] || []).some((x) => x.ts === t.ts && x.price === t.price)) addTrade({ ...t, symbol });
  }
}

function selectSymbol(symbol) {
  state.symbol = symbol;
  $("symbol").value = symbol;
  for (const id of ["depth-symbol", "chart-symbol", "trades-symbol", "control-symbol"]) $(id).textContent = symbol;
  $("mid").textContent = state.mids[symbol] || "-";
  renderBook();
  renderTrades();
  renderChart();
  loadTrades(symbol).catch(() => {});  // the recent history; the stream brings the rest
  updateEntry();
  fire("symbol", symbol);
}

// -- order entry and the risk preview --------------------------------------------------------------------

function orderFromForm() {
  const form = new FormData($("order-form"));
  const order = Object.fromEntries(form.entries());
  order.client_order_id = `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  if (order.type === "MARKET" || !order.price) delete order.price;
  return order;
}

function validate(order) {  // what the form refuses before sending: the instrument's grid and bounds, the limits
  return checkTerms(order) || checkLimits(order);
}

function checkTerms(order) {
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

function checkLimits(order) {  // the account's own limits, as the OMS checks them (the preview covers the rest)
  const limits = state.limits?.limits;
  if (!limits) return null;
  const q = scaled(order.quantity, 12), maxQty = limits.max_order_quantity[order.symbol];
  if (maxQty !== undefined && q > scaled(maxQty, 12)) return `quantity exceeds your limit of ${maxQty} for ${order.symbol}`;
  const price = order.price || state.mids[order.symbol];
  if (price && scaled(times(order.quantity, price), 24) > scaled(limits.max_order_notional, 24))
    return `notional exceeds your limit of ${limits.max_order_notional}`;
  if (state.limits.kill_switch.engaged) return "your kill switch is engaged: an admin must release it";
  return null;
}

function renderPairBalances() {
  const inst = state.instruments[state.symbol];
  if (!inst) return;
  const show = (asset) => `${escapeHtml(asset)} <b>${escapeHtml(state.balances[asset]?.available ?? "0")}</b>`;
  $("pair-balances").innerHTML = `Available ${show(inst.base)} · ${show(inst.quote)}`;
}

function updateEntry() {
  const quantity = $("quantity").value, price = $("price").value || state.mids[state.symbol];
  const ok = quantity && price && scaled(quantity, 12) !== null && scaled(price, 12) !== null;
  $("notional").textContent = ok ? times(quantity, price) : "-";
  $("price").disabled = $("type").value === "MARKET";
  renderPairBalances();
  clearTimeout(previewTimer);
  previewTimer = setTimeout(preview, PREVIEW_DELAY_MS);
  fire("entry");
}

async function preview() {
  const order = orderFromForm(), seq = ++previewSeq;
  const box = $("preview");
  // Terms off the instrument's grid get the form's message on submit; the server previews everything else,
  // limits included, and its block carries the OMS's reason code.
  if (checkTerms(order)) { box.hidden = true; $("submit").disabled = false; return; }
  const query = new URLSearchParams({ symbol: order.symbol, side: order.side, type: order.type,
                                      quantity: order.quantity, ...(order.price ? { price: order.price } : {}) });
  let doc;
  try { doc = await api("GET", `/api/v1/risk/preview?${query}`); } catch (err) {
    if (seq !== previewSeq) return;
    box.hidden = false; box.className = "preview blocked"; box.textContent = err.message; return;
  }
  if (seq !== previewSeq) return;  // the form moved on
  const req = doc.required, after = doc.balances_after[req?.asset], ex = doc.exposure;
  box.hidden = false;
  box.className = `preview ${doc.accepted ? (doc.warnings.length ? "warn" : "ok") : "blocked"}`;
  box.innerHTML =
    (req ? `<div>Requires <b data-field="required">${escapeHtml(trim(req.amount))} ${escapeHtml(req.asset)}</b></div>` : "") +
    (after ? `<div>${escapeHtml(req.asset)} after: available <span data-field="available-after">${escapeHtml(trim(after.available))}</span>, ` +
      `reserved ${escapeHtml(trim(after.reserved))}</div>` : "") +
    (ex ? `<div>Exposure ${escapeHtml(ex.asset)}: ${escapeHtml(trim(ex.before))} → <span data-field="exposure-after">${escapeHtml(trim(ex.after))}</span></div>` : "") +
    doc.warnings.map((w) => `<div class="warning" data-code="${escapeHtml(w.code)}">⚠ ${escapeHtml(w.message)}</div>`).join("") +
    (doc.block ? `<div class="block" data-code="${escapeHtml(doc.block.code)}">Blocked: ${escapeHtml(doc.block.code)}: ${escapeHtml(doc.block.message)}</div>` : "");
  $("submit").disabled = !doc.accepted;
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

// -- wiring --------------------------------------------------------------------------------------------

hooks.signedIn.push(async () => {
  if (!chart.api) initCharts();
  $("symbol").innerHTML = Object.keys(state.instruments).map((s) => `<option>${escapeHtml(s)}</option>`).join("");
  selectSymbol(state.symbol || Object.keys(state.instruments)[0]);
  renderOrders();
});

hooks.subscribed.push(async () => {
  const account = state.account;
  const orders = await api("GET", "/api/v1/orders?status=all");
  if (account !== state.account) return;  // switched meanwhile
  for (const o of orders.orders) {
    const known = state.orders.get(o.order_id);
    if (!known || (known.seq ?? -1) <= o.seq) state.orders.set(o.order_id, o);
  }
  renderOrders();
  refreshPositions();
});

hooks.message.push((msg) => {
  switch (msg.type) {
    case "execution": applyReport(msg.report); break;
    case "balances": renderBalances(); updateEntry(); refreshPositions(); break;
    case "book": if (msg.symbol === state.symbol) renderBook(); break;
    case "mid": if (msg.symbol === state.symbol) $("mid").textContent = msg.mid; break;
    case "trade": addTrade(msg); break;
  }
});

window.addEventListener("DOMContentLoaded", () => {
  $("order-form").onsubmit = submitOrder;
  $("symbol").onchange = (e) => selectSymbol(e.target.value);
  for (const id of ["quantity", "price"]) $(id).oninput = updateEntry;
  for (const id of ["type", "tif"]) $(id).onchange = updateEntry;
  document.querySelectorAll("input[name=side]").forEach((el) => { el.onchange = updateEntry; });
  $("orders").onclick = onBlotterClick;
  document.querySelectorAll("input[name=filter]").forEach((el) => { el.onchange = renderOrders; });
  $("trades-limit").onchange = renderTrades;
  $("book").onclick = (e) => { if (e.target.classList.contains("level") && e.target.textContent !== "-") {
    $("price").value = e.target.textContent; updateEntry(); } };
  setInterval(refreshPositions, POSITIONS_EVERY_MS);
});
