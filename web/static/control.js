// ATLAS console, the Trader Control Center: live market metrics, suggested prices, the fill probability of the
// order in the form (all computed by the worker from the market data it watches), and the admin's venue controls.
"use strict";

const METRICS_EVERY_MS = 1000;
let metricsBusy = false;

function metricsQuery() {
  const side = document.querySelector("input[name=side]:checked").value;
  const query = new URLSearchParams({ side });
  const price = $("type").value === "MARKET" ? "" : $("price").value.trim();
  const quantity = $("quantity").value.trim();
  if (price && quantity && scaled(price, 12) !== null && scaled(quantity, 12) !== null) {
    query.set("price", price);
    query.set("quantity", quantity);
  }
  return query;
}

async function refreshMetrics() {
  if (!state.account || !state.symbol || metricsBusy || $("console").hidden) return;
  metricsBusy = true;
  try {
    const symbol = state.symbol;
    const doc = await api("GET", `/api/v1/marketdata/${symbol}/metrics?${metricsQuery()}`);
    if (symbol === state.symbol) renderMetrics(doc);
  } catch { /* the next refresh tries again */ } finally { metricsBusy = false; }
}

function renderMetrics(doc) {
  const m = doc.metrics, pct = (x, scale = 100) => x === null ? "-" : `${(Number(x) * scale).toFixed(4)}%`;
  const rows = [
    ["volatility", "volatility /s", pct(m.volatility_per_s)],
    ["volatility-min", "volatility /min", pct(m.volatility_per_min)],
    ["spread", "spread", m.spread === null ? "-" : `${m.spread} (${m.spread_bps} bps)`],
    ["top", "top of book", m.best_bid_quantity === null ? "-" : `${m.best_bid_quantity} × ${m.best_ask_quantity}`],
    ["depth", "depth (5 levels)", `${m.bid_depth} × ${m.ask_depth}`],
    ["bias", "trade bias (buy − sell)", m.bias === null ? "-" : `${m.bias} (${m.buy_volume} / ${m.sell_volume})`],
    ["imbalance", "book imbalance", m.book_imbalance ?? "-"],
    ["change", "mid change", m.mid_change_bps === null ? "-" : `${m.mid_change_bps} bps`],
    ["samples", "window", `${m.window_ms / 1000} s: ${m.mids} mids, ${m.trades} trades`],
  ];
  $("metrics").tBodies[0].innerHTML = rows.map(([key, label, value]) =>
    `<tr data-metric="${key}"><td>${label}</td><td>${escapeHtml(value)}</td></tr>`).join("");
  $("suggestions").tBodies[0].innerHTML = ["BUY", "SELL"].map((side) => {
    const s = doc.suggestions[side];
    const price = (p) => `<td class="price ${side}" data-side="${side}">${escapeHtml(p ?? "-")}</td>`;
    return `<tr>${cell(side, side)}${price(s?.passive)}${price(s?.mid)}${price(s?.aggressive)}</tr>`;
  }).join("");
  const fill = doc.fill;
  $("fill-probability").textContent = fill ? `${(Number(fill.probability) * 100).toFixed(1)}%` : "-";
  $("fill-method").textContent = fill ? `${fill.method}${fill.method === "touch" ? `, within ${fill.horizon_s} s` : ""}` : "enter a price and quantity";
}

// -- the venue (admin) -----------------------------------------------------------------------------------

const venue = { symbol: null, loaded: null };  // the symbol the form shows, and its values as loaded

function venueForm() {
  return { volatility: $("venue-volatility").value.trim(), spread_bps: $("venue-spread").value.trim(),
           liquidity: $("venue-liquidity").value.trim(), levels: $("venue-levels").value.trim(),
           halted: $("venue-halted").checked };
}

async function loadVenue() {
  const form = $("venue-form");
  if (state.role !== "admin" || !state.symbol) { form.hidden = true; return; }
  const symbol = state.symbol;
  venue.symbol = null;  // no Apply until this symbol's values are in
  const p = await api("GET", `/api/v1/venue/${symbol}`);
  if (symbol !== state.symbol) return;  // a slow answer about the symbol left behind
  $("venue-volatility").value = p.volatility;
  $("venue-spread").value = p.spread_bps;
  $("venue-liquidity").value = p.liquidity;
  $("venue-levels").value = p.levels;
  $("venue-halted").checked = p.halted;
  Object.assign(venue, { symbol, loaded: venueForm() });
  form.hidden = false;
}

async function applyVenue(event) {
  event.preventDefault();
  if (venue.symbol !== state.symbol) return;
  // Only what the admin changed: the rest keeps whatever value the venue has now.
  const now = venueForm(), change = {};
  for (const [key, value] of Object.entries(now)) if (value !== venue.loaded[key] && value !== "") change[key] = value;
  if (!Object.keys(change).length) { $("venue-message").textContent = "nothing changed"; return; }
  try {
    await api("POST", `/api/v1/admin/venue/${venue.symbol}`, change);
    venue.loaded = now;
    $("venue-message").textContent = `applied to ${state.symbol} at ${clock(Date.now())}`;
    $("venue-message").className = "muted";
  } catch (err) {
    $("venue-message").textContent = err.message;
    $("venue-message").className = "error";
  }
}

hooks.signedIn.push(() => { loadVenue().catch(() => {}); refreshMetrics(); });
hooks.symbol.push(() => { loadVenue().catch(() => {}); refreshMetrics(); });
hooks.entry.push(() => refreshMetrics());

window.addEventListener("DOMContentLoaded", () => {
  $("venue-form").onsubmit = applyVenue;
  $("suggestions").onclick = (e) => {
    const td = e.target.closest("td.price");
    if (!td || td.textContent === "-") return;
    document.querySelector(`input[name=side][value=${td.dataset.side}]`).checked = true;
    $("type").value = "LIMIT";
    $("price").value = td.textContent;
    updateEntry();
  };
  setInterval(refreshMetrics, METRICS_EVERY_MS);
});
