// ATLAS console, the Settings page: an account's risk limits and the kill switches. A trader reads its own; an
// admin picks any account, saves its limits and engages or releases its kill switch or the global one. Both travel
// through Kafka (the API answers 202), so the page polls the account's limits until the OMS shows the change.
"use strict";

const SETTINGS_POLL_MS = 300;
const SETTINGS_POLL_FOR_MS = 15000;
const settingsPage = { built: false, viewer: null, accountId: null, doc: null };  // viewer: who signed in

// -- the page ------------------------------------------------------------------------------------------

function buildSettings() {
  $("settings").innerHTML = `
    <div class="pages-head">
      <h2>Settings</h2>
      <label id="settings-account-choice" hidden>Account <select id="settings-account" data-testid="settings-account"></select></label>
      <span id="settings-error" class="error" role="alert"></span>
    </div>
    <div class="settings-grid">
      <section class="panel">
        <h2>Risk limits <span id="limits-account" class="muted"></span></h2>
        <p id="limits-readonly" class="note" data-testid="limits-readonly">Read only: an admin changes limits.</p>
        <form id="limits-form" data-testid="limits-form" novalidate>
          <fieldset id="limits-fields">
            <div class="fields" id="limits-main"></div>
            <h3>Max order quantity per symbol <span class="muted">blank: the instrument's own bounds only</span></h3>
            <div class="fields" id="limits-quantity"></div>
            <h3>Max position per asset <span class="muted">blank: no limit</span></h3>
            <div class="fields" id="limits-position"></div>
          </fieldset>
          <div class="form-foot">
            <button id="save-limits" data-testid="save-limits" type="submit">Save</button>
            <span id="limits-status" class="status" data-testid="limits-status" role="status"></span>
          </div>
        </form>
      </section>
      <section class="panel">
        <h2>Kill switches</h2>
        <div id="kill-account" class="kill-row" data-testid="kill-account"></div>
        <div id="kill-global" class="kill-row" data-testid="kill-global"></div>
        <label id="kill-reason-label">Reason <input id="kill-reason" data-testid="kill-reason" maxlength="200"
          placeholder="why: shown with the switch"></label>
        <p id="kill-status" class="status" data-testid="kill-status" role="status"></p>
      </section>
    </div>`;
  $("limits-form").onsubmit = saveLimits;
  $("settings-account").onchange = (e) => { settingsPage.accountId = e.target.value; loadLimits(); };
  $("settings").querySelector(".settings-grid").onclick = onKillClick;
  settingsPage.built = true;
}

// A field's `data-field` is the server's name for it ("max_position.BTC"): its 422 errors point back to the input.
const limitField = (field, label, kind, placeholder = "") => `<label>${escapeHtml(label)}
  <input data-field="${escapeHtml(field)}" data-kind="${kind}" inputmode="${kind === "integer" ? "numeric" : "decimal"}"
    placeholder="${escapeHtml(placeholder)}">
  <span class="field-error" data-error-for="${escapeHtml(field)}"></span></label>`;

function renderFields() {
  const symbols = Object.keys(state.instruments);
  const bases = [...new Set(Object.values(state.instruments).map((i) => i.base))];
  $("limits-main").innerHTML = limitField("max_order_notional", "Max order notional (quote)", "decimal") +
    limitField("max_orders_per_second", "Max orders per second", "integer") +
    limitField("max_open_orders", "Max open orders", "integer") +
    limitField("price_collar_bps", "Price collar (bps)", "integer");
  $("limits-quantity").innerHTML = symbols.map((s) =>
    limitField(`max_order_quantity.${s}`, s, "decimal", `instrument max ${state.instruments[s].max_quantity}`)).join("");
  $("limits-position").innerHTML = bases.map((a) => limitField(`max_position.${a}`, a, "decimal", "no limit")).join("");
}

function splitField(field) {  // "max_position.BTC" -> ["max_position", "BTC"]; "max_open_orders" -> [..., null]
  const dot = field.indexOf(".");
  return dot < 0 ? [field, null] : [field.slice(0, dot), field.slice(dot + 1)];
}

function renderLimits(doc) {
  settingsPage.doc = doc;
  $("limits-account").textContent = doc.account_id;
  showFieldErrors({});
  for (const input of $("limits-form").querySelectorAll("input[data-field]")) {
    const [name, key] = splitField(input.dataset.field);
    input.value = (key ? doc.limits[name]?.[key] : doc.limits[name]) ?? "";
  }
  renderKill($("kill-account"), `Account ${doc.account_id}`, doc.kill_switch, "account");
  renderKill($("kill-global"), "Global: every account", doc.global_kill_switch, "global");
}

function renderKill(el, title, ks, scope) {
  el.dataset.engaged = ks.engaged;
  el.innerHTML = `<div><b>${escapeHtml(title)}</b> <span class="kill-state ${ks.engaged ? "on" : "off"}">` +
    `${ks.engaged ? "engaged" : "off"}</span><div class="muted">${ks.engaged ? escapeHtml(ks.reason || "no reason given") : ""}</div></div>` +
    (state.role === "admin" ? `<button type="button" data-scope="${scope}" data-engage="${!ks.engaged}"` +
      ` class="${ks.engaged ? "" : "danger"}">${ks.engaged ? "Release" : "Engage"}</button>` : "");
}

function renderRole() {
  const admin = state.role === "admin";
  $("settings-account-choice").hidden = !admin;
  $("limits-fields").disabled = !admin;  // a disabled fieldset disables every input in it
  $("limits-readonly").hidden = admin;
  $("save-limits").hidden = !admin;
  $("kill-reason-label").hidden = !admin;
}

function setStatus(id, kind, text) {  // kind: pending, applied or error (styled by data-state)
  $(id).dataset.state = kind;
  $(id).textContent = text;
}

// -- loading, and waiting for a change to be applied ------------------------------------------------------

function fetchLimits(accountId) {
  return state.role === "admin" ? api("GET", `/api/v1/admin/accounts/${encodeURIComponent(accountId)}/limits`)
    : api("GET", "/api/v1/limits");
}

async function loadAccountChoice() {
  const doc = await api("GET", "/api/v1/admin/accounts");
  const ids = doc.accounts.map((a) => a.account_id);
  if (!ids.includes(settingsPage.accountId)) settingsPage.accountId = ids.includes(state.account) ? state.account : ids[0];
  $("settings-account").innerHTML = doc.accounts.map((a) =>
    `<option value="${escapeHtml(a.account_id)}">${escapeHtml(a.account_id)} (${escapeHtml(a.role)})</option>`).join("");
  $("settings-account").value = settingsPage.accountId;
}

async function loadLimits() {
  const accountId = settingsPage.accountId;
  try {
    const doc = await fetchLimits(accountId);
    if (accountId === settingsPage.accountId) renderLimits(doc);  // not if another account was chosen meanwhile
    $("settings-error").textContent = "";
  } catch (err) {
    $("settings-error").textContent = err.message;
  }
}

async function loadSettings() {
  if (settingsPage.viewer !== state.account) settingsPage.accountId = null;  // another sign-in: start from its own
  settingsPage.viewer = state.account;
  try {
    if (state.role === "admin") await loadAccountChoice();
    else settingsPage.accountId = state.account;
  } catch (err) {
    $("settings-error").textContent = err.message;
    return;
  }
  await loadLimits();
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function whenApplied(accountId, applied) {  // the account's limits document once `applied(doc)` holds
  const deadline = Date.now() + SETTINGS_POLL_FOR_MS;
  for (;;) {
    const doc = await fetchLimits(accountId);
    if (applied(doc)) {
      if (accountId === settingsPage.accountId) renderLimits(doc);
      return doc;
    }
    if (Date.now() > deadline) throw new Error(`not applied after ${SETTINGS_POLL_FOR_MS / 1000} s: reopen the page to check`);
    await pause(SETTINGS_POLL_MS);
  }
}

// -- saving limits ---------------------------------------------------------------------------------------

function parseLimit(text, kind) {  // the JSON value to send, or null if the text is not one
  if (kind === "integer") return /^[1-9]\d*$/.test(text) ? Number(text) : null;  // counts and bps, not money
  return scaled(text, 18) === null ? null : text;  // money and quantities stay decimal strings
}

function limitsFromForm(base) {  // the full limits object: what the form shows, changed; the rest (restricted_symbols...) kept
  const limits = { ...base, max_order_quantity: { ...base.max_order_quantity }, max_position: { ...base.max_position } };
  const errors = {};
  for (const input of $("limits-form").querySelectorAll("input[data-field]")) {
    const field = input.dataset.field, [name, key] = splitField(field), text = input.value.trim();
    if (key && !text) { delete limits[name][key]; continue; }  // a blank cap: none
    const value = parseLimit(text, input.dataset.kind);
    if (value === null) errors[field] = input.dataset.kind === "integer" ? "a whole number from 1" : "a decimal number";
    else if (key) limits[name][key] = value;
    else limits[name] = value;
  }
  return { limits, errors };
}

function showFieldErrors(errors) {  // errors: field -> message; those without an input are returned
  const unplaced = [];
  for (const span of $("limits-form").querySelectorAll(".field-error")) span.textContent = "";
  for (const [field, message] of Object.entries(errors)) {
    const span = $("limits-form").querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    if (span) span.textContent = message;
    else unplaced.push(`${field}: ${message}`);
  }
  return unplaced;
}

// JSON with sorted keys and arrays, so that limits compare equal whatever order the server lists them in.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).sort().join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

async function saveLimits(event) {
  event.preventDefault();
  const accountId = settingsPage.accountId;
  // The object sent is the shown account's limits, changed: never another account's still on screen.
  if (settingsPage.doc?.account_id !== accountId) { setStatus("limits-status", "pending", "loading the limits…"); return; }
  const { limits, errors } = limitsFromForm(settingsPage.doc.limits);
  showFieldErrors(errors);
  if (Object.keys(errors).length) { setStatus("limits-status", "error", "check the fields marked"); return; }
  $("save-limits").disabled = true;
  setStatus("limits-status", "pending", "sent, waiting for the OMS…");
  try {
    const sent = await api("PUT", `/api/v1/admin/accounts/${encodeURIComponent(accountId)}/limits`, limits);
    const wanted = canonical(sent.limits);  // as the server parsed them: "0500" comes back as "500"
    await whenApplied(accountId, (doc) => canonical(doc.limits) === wanted);
    setStatus("limits-status", "applied", `applied to ${accountId} at ${clock(Date.now())}`);
  } catch (err) {
    const fields = Object.fromEntries((err.doc?.errors || []).map((e) => [e.field, e.message]));
    setStatus("limits-status", "error", [err.message, ...showFieldErrors(fields)].join("; "));
  } finally {
    $("save-limits").disabled = false;
  }
}

// -- kill switches (admin) -------------------------------------------------------------------------------

function onKillClick(event) {
  const button = event.target.closest("button[data-scope]");
  if (!button) return;
  const engaged = button.dataset.engage === "true";
  if (button.dataset.scope === "global" && engaged && !confirm("Stop trading for every account?")) return;
  setKill(button.dataset.scope, engaged, button);
}

async function setKill(scope, engaged, button) {
  const accountId = settingsPage.accountId, global = scope === "global";
  const what = global ? "global kill switch" : `kill switch of ${accountId}`;
  const body = { engaged, reason: $("kill-reason").value.trim(), ...(global ? {} : { account_id: accountId }) };
  button.disabled = true;
  setStatus("kill-status", "pending", `${engaged ? "engaging" : "releasing"} the ${what}…`);
  try {
    await api("POST", "/api/v1/admin/kill-switch", body);
    await whenApplied(accountId, (doc) => doc[global ? "global_kill_switch" : "kill_switch"].engaged === engaged);
    setStatus("kill-status", "applied", `${what} ${engaged ? "engaged" : "released"} at ${clock(Date.now())}`);
  } catch (err) {
    button.disabled = false;
    setStatus("kill-status", "error", err.message);
  }
}

views.settings = {
  show() {
    if (!settingsPage.built) buildSettings();
    renderFields();
    renderRole();
    loadSettings();
  },
};
