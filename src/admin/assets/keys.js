// noviqi admin Keys page: lists keys (/admin/api/keys), creates, edits, revokes and re-enables
// them, and shows the newest audit lines (/admin/api/audit). Plain JavaScript, no
// dependencies, no HTML strings (every node is built with the DOM API), so the page runs under
// a CSP without 'unsafe-inline'. Every write carries the session's CSRF token in x-csrf-token.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  let keys = [];
  let editing = null;

  const { el, fmtUsd } = noviqiUi;

  function say(text, bad) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.classList.toggle("bad", !!bad);
  }

  function fmtLimit(n) {
    return n === null || n === undefined ? "∞" : String(n);
  }

  // "2027-06-01T00:00:00Z" → "2027-06-01 00:00 UTC"
  function fmtUtc(iso) {
    if (!iso) return "never";
    return iso.slice(0, 16).replace("T", " ") + " UTC";
  }

  function fmtLocal(iso) {
    if (!iso) return "–";
    return new Date(iso).toLocaleString();
  }

  // The datetime-local inputs are read as UTC, as their label says.
  function toRfc3339(local) {
    if (!local) return null;
    return (local.length === 16 ? local + ":00" : local.slice(0, 19)) + "Z";
  }

  function globs(text) {
    const list = text.split(/[\s,]+/).filter((g) => g.length > 0);
    return list.length ? list : null;
  }

  async function api(method, path, body) {
    const init = {
      method, credentials: "same-origin",
      headers: { accept: "application/json", "x-csrf-token": csrf },
    };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      window.location.assign("/admin");
      throw new Error("signed out");
    }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const message = data.error && data.error.message ? data.error.message : "HTTP " + resp.status;
      throw new Error(message);
    }
    return data;
  }

  function renderKeys() {
    const tbl = document.getElementById("keys-table");
    tbl.replaceChildren();
    const head = el("tr");
    ["Name", "Prefix", "State", "Models", "Req/min", "Tok/min", "Budget (spent)", "Expires",
      "Last used", "Actions"].forEach((c) => head.append(el("th", { scope: "col" }, c)));
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    if (keys.length === 0) {
      const tr = el("tr");
      tr.append(el("td", { colspan: "10" }, "no keys yet"));
      tbody.append(tr);
    }
    keys.forEach((k) => {
      const tr = el("tr", { "data-key": k.name });
      // data-label: the column's name, shown beside the value on a phone-width screen.
      const td = (label, cls, text) => el("td", { "data-label": label, class: cls }, text);
      tr.append(td("Name", "", k.name + (k.admin ? " (admin)" : "")));
      tr.append(td("Prefix", "mono", k.prefix ? k.prefix + "…" : "–"));
      const state = td("State", "");
      state.append(el("span", { class: "state " + k.state }, k.state));
      tr.append(state);
      tr.append(td("Models", "mono wrap", k.models.join(", ")));
      tr.append(td("Req/min", "", fmtLimit(k.limits.requests_per_minute)));
      tr.append(td("Tok/min", "", fmtLimit(k.limits.tokens_per_minute)));
      const spent = fmtUsd(k.spend.usd);
      tr.append(td("Budget", "wrap", k.budget
        ? `${spent} of ${fmtUsd(k.budget.usd)} / ${k.budget.period}`
        : `${spent} this ${k.spend.period}, no budget`));
      tr.append(td("Expires", "wrap", fmtUtc(k.expires_at)));
      tr.append(td("Last used", "wrap", fmtLocal(k.last_used)));
      const cell = el("td", { class: "actions" });
      const actions = el("div", { class: "actions-row" });
      cell.append(actions);
      if (locked) {
        tr.append(cell);
        tbody.append(tr);
        return;
      }
      const edit = el("button", { type: "button", "aria-label": "Edit " + k.name }, "Edit");
      edit.addEventListener("click", () => openEdit(k));
      actions.append(edit);
      if (k.state === "disabled") {
        const enable = el("button", { type: "button", "aria-label": "Enable " + k.name }, "Enable");
        enable.addEventListener("click", () => change(k.name, "PATCH", { disabled: false }, "enabled"));
        actions.append(enable);
      } else {
        const revoke = el("button", { type: "button", class: "danger", "aria-label": "Revoke " + k.name },
          "Revoke");
        revoke.addEventListener("click", () => {
          if (window.confirm(`Revoke key ${k.name}? Requests with it get 403 at once.`)) {
            change(k.name, "POST", undefined, "revoked");
          }
        });
        actions.append(revoke);
      }
      tr.append(cell);
      tbody.append(tr);
    });
    tbl.append(thead, tbody);
  }

  function renderAudit(data) {
    const tbl = document.getElementById("audit-table");
    tbl.replaceChildren();
    const head = el("tr");
    ["Time", "Actor", "Address", "Action", "Target", "Result"].forEach((c) => {
      head.append(el("th", { scope: "col" }, c));
    });
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    const entries = data.entries || [];
    if (entries.length === 0) {
      const tr = el("tr");
      tr.append(el("td", { colspan: "6" },
        data.enabled ? "nothing logged yet" : "the audit log is off ([admin] audit_path = \"\")"));
      tbody.append(tr);
    }
    entries.forEach((e) => {
      const tr = el("tr", { class: "audit-row" });
      const td = (label, cls, text) => el("td", { "data-label": label, class: cls }, text);
      tr.append(td("Time", "", fmtLocal(e.ts)));
      tr.append(td("Actor", "mono", e.actor));
      tr.append(td("Address", "mono", e.client_ip));
      tr.append(td("Action", "", e.action));
      tr.append(td("Target", "", e.target));
      tr.append(td("Result", e.ok ? "" : "fail", e.ok ? "ok" : "refused"));
      tbody.append(tr);
    });
    tbl.append(thead, tbody);
  }

  // A config noviqi cannot write (a read-only mount): say why, and offer no edits.
  let locked = false;
  function readOnly(why) {
    locked = Boolean(why);
    const note = document.getElementById("read-only");
    note.textContent = why ? "Read-only: " + why + "." : "";
    note.hidden = !why;
    document.getElementById("create-panel").hidden = locked;
  }

  async function load() {
    try {
      const [list, audit] = await Promise.all([
        api("GET", "/admin/api/keys"), api("GET", "/admin/api/audit"),
      ]);
      keys = list.keys;
      readOnly(list.read_only);
      renderKeys();
      renderAudit(audit);
      say("Updated " + new Date().toLocaleTimeString() + " · " + keys.length + " keys");
      document.body.dataset.loaded = String(Date.now());
    } catch (e) {
      say("Could not load keys: " + e.message, true);
    }
  }

  function formError(form, message) {
    const p = form.querySelector(".form-error");
    p.textContent = message || "";
    p.hidden = !message;
  }

  function number(value) {
    return value === "" ? null : Number(value);
  }

  async function create(ev) {
    ev.preventDefault();
    const form = ev.target;
    const f = form.elements;
    const body = { name: f.name.value.trim() };
    const models = globs(f.models.value);
    if (models) body.models = models;
    for (const field of ["rpm", "tpm", "budget_usd"]) {
      if (f[field].value !== "") body[field] = number(f[field].value);
    }
    if (f.budget_period.value) body.budget_period = f.budget_period.value;
    if (f.expires_at.value) body.expires_at = toRfc3339(f.expires_at.value);
    try {
      const made = await api("POST", "/admin/api/keys", body);
      formError(form, "");
      form.reset();
      showKey(made);
      await load();
    } catch (e) {
      formError(form, e.message);
    }
  }

  // The new key, once: it lives only in this input until "Done".
  function showKey(made) {
    document.getElementById("new-key-name").textContent = made.name;
    const input = document.getElementById("new-key-value");
    input.value = made.key;
    document.getElementById("new-key").hidden = false;
    input.focus();
    input.select();
  }

  async function copyKey() {
    const input = document.getElementById("new-key-value");
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (_) {
      // No clipboard API (plain HTTP off localhost): copy the selection instead.
      input.select();
      document.execCommand("copy");
    }
    say("Key copied to the clipboard.");
  }

  function dismissKey() {
    document.getElementById("new-key-value").value = "";
    document.getElementById("new-key").hidden = true;
    document.querySelector("#create-form input[name=name]").focus();
  }

  function openEdit(k) {
    editing = k;
    const form = document.getElementById("edit-form");
    const f = form.elements;
    document.getElementById("edit-name").textContent = k.name;
    f.models.value = k.models.join(", ");
    f.rpm.value = k.limits.requests_per_minute ?? "";
    f.tpm.value = k.limits.tokens_per_minute ?? "";
    f.budget_usd.value = k.budget ? k.budget.usd : "";
    f.budget_period.value = k.budget ? k.budget.period : "";
    f.expires_at.value = k.expires_at ? k.expires_at.slice(0, 19) : "";
    for (const input of form.querySelectorAll("input, select")) delete input.dataset.dirty;
    formError(form, "");
    document.getElementById("edit-dialog").showModal();
  }

  // Only the fields the admin touched are sent: the others stay as the file has them (an
  // inherited [limits] default is not pinned into the key). An emptied field is null: back
  // to the default.
  async function saveEdit(ev) {
    ev.preventDefault();
    const form = ev.target;
    const f = form.elements;
    const body = {};
    const dirty = (name) => f[name].dataset.dirty === "1";
    if (dirty("models")) body.models = globs(f.models.value);
    for (const field of ["rpm", "tpm", "budget_usd"]) {
      if (dirty(field)) body[field] = number(f[field].value);
    }
    if (dirty("budget_period")) body.budget_period = f.budget_period.value || null;
    if (dirty("expires_at")) body.expires_at = toRfc3339(f.expires_at.value);
    try {
      await api("PATCH", "/admin/api/keys/" + encodeURIComponent(editing.name), body);
      document.getElementById("edit-dialog").close();
      say("Saved " + editing.name + ".");
      await load();
    } catch (e) {
      formError(form, e.message);
    }
  }

  async function change(name, method, body, done) {
    const path = "/admin/api/keys/" + encodeURIComponent(name) + (method === "POST" ? "/revoke" : "");
    try {
      await api(method, path, body);
      await load();
      say(`Key ${name} ${done}.`);
    } catch (e) {
      say(`Could not change ${name}: ${e.message}`, true);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("create-form").addEventListener("submit", create);
    document.getElementById("edit-form").addEventListener("submit", saveEdit);
    document.getElementById("edit-form").addEventListener("input", (ev) => {
      ev.target.dataset.dirty = "1";
    });
    document.getElementById("edit-cancel").addEventListener("click", () => {
      document.getElementById("edit-dialog").close();
    });
    document.getElementById("copy-key").addEventListener("click", copyKey);
    document.getElementById("dismiss-key").addEventListener("click", dismissKey);
    load();
  });
})();
