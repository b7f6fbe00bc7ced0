// ATLAS console, the core: state, the API, sign-in and the account switcher, the stream, views, theme, health.
// The other scripts (trading, control, analytics, settings) register on `hooks` and `views`.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem("atlas.key"), account: null, role: null, instruments: {}, symbol: null,
  // `next`: the executions offset to resume from (the stream's resume token), null before the first hello.
  orders: new Map(), balances: {}, books: {}, mids: {}, trades: {}, ws: null, next: null, retry: 0,
  pnl: [],  // the account's total P&L sampled while the page is open: {time, value} for the charts
  demo: [],  // in demo mode, the demo accounts and their keys (the server's console config)
};
// The tab keeps one key, the signed-in account's, and forgets it on sign-out: switching to an account that
// is not a demo account means signing in with its key again.
sessionStorage.removeItem("atlas.keys");  // what earlier versions kept: every key signed in with
const CLOSED = new Set(["FILLED", "CANCELED", "REJECTED", "EXPIRED"]);
const HEALTH_EVERY_MS = 5000;
const lastMidAt = { ms: 0 };
// Each script adds its handlers: signedIn(), subscribed() once the account's stream is up, message(msg) for
// every stream message, symbol(symbol) when the
// chosen symbol changes, entry() when the order form changes, positions(doc) after each positions refresh.
const hooks = { signedIn: [], subscribed: [], message: [], symbol: [], entry: [], positions: [] };
const views = {};  // name -> { show() } for the pages beside the console
const fire = (name, ...args) => hooks[name].forEach((fn) => fn(...args));

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
function unscaled(v, p) {  // a scaled BigInt back to a decimal string, trailing zeros dropped
  const neg = v < 0n, digits = (neg ? -v : v).toString().padStart(p + 1, "0");
  const text = p ? `${digits.slice(0, -p)}.${digits.slice(-p)}`.replace(/\.?0+$/, "") : digits;
  return (neg ? "-" : "") + text;
}
function times(a, b) {  // exact product of two decimal strings, as a decimal string
  const pa = placesOf(a), pb = placesOf(b);
  return unscaled(scaled(a, pa) * scaled(b, pb), pa + pb);
}

// -- the API ---------------------------------------------------------------------------------------------

async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: { "X-API-Key": state.key, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const doc = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(doc.detail || `HTTP ${response.status}`), { doc, status: response.status });
  if (response.headers.get("X-Atlas-Worker")) $("worker").textContent = `answered by ${response.headers.get("X-Atlas-Worker")}`;
  return doc;
}

// -- sign in, and switching between demo accounts ------------------------------------------------------

let signInCount = 0;  // a later sign-in supersedes one still waiting for its answers

async function signIn(key) {
  const attempt = ++signInCount, previous = state.key;
  state.key = key;
  let doc;
  try { doc = await api("GET", "/api/v1/limits"); } catch (err) { state.key = previous; throw err; }  // 401: bad key
  if (attempt !== signInCount) return;
  if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); setConnection(false); }
  sessionStorage.setItem("atlas.key", key);
  Object.assign(state, { account: doc.account_id, next: null, orders: new Map(), balances: {}, positions: null,
                         pnl: [], limits: doc, retry: 0 });
  state.role = (state.demo.find((a) => a.account_id === doc.account_id) || {}).role
    || await api("GET", "/api/v1/admin/accounts").then(() => "admin", () => "trader");
  if (attempt !== signInCount) return;
  $("account").textContent = `${state.account} (${state.role})`;
  $("signin").hidden = true;
  $("signout").hidden = false;
  renderSwitcher();
  if (!Object.keys(state.instruments).length) {
    const instruments = await api("GET", "/api/v1/instruments");
    state.instruments = Object.fromEntries(instruments.instruments.map((i) => [i.symbol, i]));
  }
  showView(location.hash.slice(1) || "console");
  fire("signedIn");
  connect();
}

function renderSwitcher() {
  const choices = { ...Object.fromEntries(state.demo.map((a) => [a.account_id, a.key])), [state.account]: state.key };
  const select = $("account-switch");
  select.innerHTML = Object.keys(choices).sort().map((a) => `<option value="${escapeHtml(a)}">${escapeHtml(a)}</option>`).join("");
  select.value = state.account;
  select.closest("label").hidden = Object.keys(choices).length < 2;
  select.onchange = () => signIn(choices[select.value]).catch((err) => { $("signin-error").textContent = err.message; });
}

function signOut() {
  sessionStorage.removeItem("atlas.key");
  if (state.ws) state.ws.close();
  location.hash = "";
  location.reload();
}

async function loadDemoAccounts() {
  const config = await fetch("/api/v1/console/config").then((r) => r.json()).catch(() => ({ demo: false, accounts: [] }));
  state.demo = config.accounts || [];
  if (!config.demo) return;
  $("demo-accounts").hidden = false;
  if (!$("api-key").value) $("api-key").value = (state.demo.find((a) => a.role === "trader") || state.demo[0])?.key || "";
  $("demo-buttons").innerHTML = state.demo.map((a) =>
    `<button type="button" class="demo-account" data-key="${escapeHtml(a.key)}">${escapeHtml(a.account_id)} ` +
    `<span>${escapeHtml(a.role)}</span></button>`).join("");
  $("demo-buttons").onclick = (e) => {
    const button = e.target.closest("button[data-key]");
    if (button) signIn(button.dataset.key).catch((err) => { $("signin-error").textContent = err.message; });
  };
}

// -- views ---------------------------------------------------------------------------------------------

function showView(name) {
  if (!["console", ...Object.keys(views)].includes(name)) name = "console";
  document.querySelectorAll("main.view").forEach((el) => { el.hidden = el.dataset.view !== name; });
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  if (views[name]) views[name].show();
}

// -- the stream ----------------------------------------------------------------------------------------

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/stream`);
  state.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ op: "subscribe", key: state.key, since: state.next }));
  ws.onmessage = (event) => { if (state.ws === ws) receive(JSON.parse(event.data)); };
  ws.onclose = () => {
    if (state.ws !== ws) return;  // replaced by a switch of account
    setConnection(false);
    state.retry = Math.min(state.retry + 1, 5);
    setTimeout(() => { if (state.ws === ws) connect(); }, 250 * 2 ** state.retry);  // resumes from the last offset
  };
}

function setConnection(up) {
  const el = $("connection");
  el.textContent = up ? "live" : "disconnected";
  el.className = `connection ${up ? "up" : "down"}`;
}

function receive(msg) {
  switch (msg.type) {
    case "hello": state.retry = 0; setConnection(true);
      // The first hello of an account: the stream carries every report from `since` on, so a snapshot read
      // now misses nothing (a report in both is applied by its time).
      if (state.next === null) { state.next = msg.since; fire("subscribed"); }
      break;
    case "execution": state.next = msg.offset + 1; break;
    case "balances": state.balances = msg.balances; break;
    case "book": state.books[msg.symbol] = msg; break;
    case "mid": if (!lastMidAt.ms) setTimeout(checkHealth, 0);  // the first sign of the venue
      state.mids[msg.symbol] = msg.mid; lastMidAt.ms = Date.now(); break;
    case "error": $("signin-error").textContent = msg.detail; break;
  }
  fire("message", msg);
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
    const unknown = name === "venue" && !state.account;  // seen through the stream, which starts at sign-in
    el.textContent = unknown ? "-" : off ? "off" : ok ? "ok" : "down";
    el.className = unknown || off ? "" : ok ? "ok" : "fail";
  }
}

// -- rendering helpers shared by the pages --------------------------------------------------------------

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
// A decimal string without trailing zeros ("617.564700" -> "617.5647"): the same number, shorter.
const trim = (text) => (text == null || !String(text).includes(".")) ? text : String(text).replace(/\.?0+$/, "");
const cell = (text, cls = "") => `<td class="${escapeHtml(cls)}">${text == null ? "-" : escapeHtml(text)}</td>`;
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

const cssVariable = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const themeColors = () => ({ text: cssVariable("--muted"), line: cssVariable("--line") });
// An amount per quote asset ({"USD": "12.5"}) as the page shows it: "12.5 USD".
function inQuote(amounts) {
  const quote = Object.keys(amounts || {})[0];
  return quote ? `${amounts[quote] ?? "-"} ${quote}` : "-";
}

const charts = [];  // every chart on the page, restyled when the theme changes

function chartTheme() {
  const colors = themeColors();
  return { layout: { background: { color: "transparent" }, textColor: colors.text },
           grid: { vertLines: { visible: false }, horzLines: { color: colors.line } } };
}

function lineChart(el, options = {}) {  // a lightweight-charts chart styled like the page
  const created = LightweightCharts.createChart(el, {
    autoSize: true, ...chartTheme(), timeScale: { timeVisible: true, secondsVisible: true }, ...options,
  });
  charts.push(created);
  return created;
}

// -- wiring --------------------------------------------------------------------------------------------

function init() {
  const theme = localStorage.getItem("atlas.theme") || "dark";
  document.documentElement.dataset.theme = theme;
  $("theme").onclick = () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("atlas.theme", next);
    const theme = chartTheme();
    charts.forEach((c) => c.applyOptions(theme));
  };
  $("signin-form").onsubmit = async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try { await signIn($("api-key").value.trim()); } catch (err) { $("signin-error").textContent = err.message; }
  };
  $("signout").onclick = signOut;
  window.onhashchange = () => { if (state.account) showView(location.hash.slice(1) || "console"); };
  checkHealth();
  setInterval(checkHealth, HEALTH_EVERY_MS);
  loadDemoAccounts().finally(() => {
    if (state.key) signIn(state.key).catch(() => sessionStorage.removeItem("atlas.key"));
  });
}

window.addEventListener("DOMContentLoaded", init);
