// onehop's local UI: live state over server-sent events, changes through the JSON API.
// No external resources, no inline scripts (the CSP forbids both); text from the
// network is only ever set with textContent.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "onehop-token", LANG_KEY = "onehop-lang";
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  const found = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (found) {
    token = decodeURIComponent(found[1]);
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  }
  let texts = { en: {} }, lang = "en", state = null, formFilled = false, previewTimer = 0;

  function t(key, args) {
    let s = (texts[lang] && texts[lang][key]) || texts.en[key] || key;
    for (const [k, v] of Object.entries(args || {})) s = s.split("{" + k + "}").join(String(v));
    return s;
  }

  async function api(method, path, body) {
    const headers = { "X-Onehop-Token": token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, cache: "no-store", credentials: "same-origin",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      const problems = (data.problems || []).map((p) => p.key + ": " + p.message).join("; ");
      throw new Error(problems || data.error || String(r.status));
    }
    return data;
  }

  // -- language -----------------------------------------------------------------------
  function chooseLang() {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved && texts[saved]) return saved;
    for (const l of navigator.languages || [navigator.language || "en"]) {
      const base = l.toLowerCase().split("-")[0];
      if (texts[base]) return base;
    }
    return "en";
  }

  function applyLang() {
    document.documentElement.lang = lang;
    document.documentElement.dir = lang === "fa" ? "rtl" : "ltr";
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    $("graph-label").textContent = t("graph");
    $("lang").value = lang;
    if (state) render(state);
  }

  function regionName(code) {
    try { return new Intl.DisplayNames([lang], { type: "region" }).of(code) + " (" + code + ")"; }
    catch (e) { return code; }
  }

  // -- rendering ----------------------------------------------------------------------
  function size(n) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    const two = (x) => String(x).padStart(2, "0");
    return (h ? h + ":" + two(m) : String(m)) + ":" + two(s);
  }

  function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }

  function render(s) {
    setText("state", t("state_" + s.state));
    $("state-dot").className = "dot " + s.state;
    setText("since", s.state === "starting" ? "" : t("for", { duration: duration(s.now - s.since) }));
    const toggle = $("toggle");
    toggle.textContent = s.wanted ? t("disconnect") : t("connect");
    toggle.dataset.action = s.wanted ? "disconnect" : "connect";
    setText("server-region", s.server_region ? regionName(s.server_region) : "–");
    setText("protocol", s.protocol || "–");
    setText("client-region", s.client_region ? regionName(s.client_region) : t("unknown"));
    setText("up", size(s.bytes_up));
    setText("down", size(s.bytes_down));
    graph(s.rates || []);
    setText("socks", s.socks_proxy || "–");
    setText("http", s.http_proxy || "–");
    const wd = s.whole_device;
    setText("whole-device-state", !wd.available ? t("unavailable", { reason: wd.reason })
                                    : (s.whole_device_active ? t("on") : t("off")));
    const st = s.settings, regions = [];
    if (st.split_tunnel_own_region) regions.push(t("own_region"));
    regions.push(...st.split_tunnel_regions);
    setText("split-state", regions.length ? t("split_on", { regions: regions.join(", ") }) : t("off"));
    homepages(s.homepages);
    updates(s.upgrade, s.remote_list);
    notices(s.notices);
    regionOptions(s.available_regions, st.egress_region);
    const box = $("whole-device");
    box.disabled = !wd.available && !box.checked;
    setText("whole-device-why", wd.available ? "" : t("unavailable", { reason: wd.reason }));
    if (!formFilled) fillSettings(st);
  }

  function graph(rates) {
    const max = Math.max(1, ...rates.map((r) => Math.max(r[0], r[1])));
    const line = (i) => rates.map((r, x) => (x * 300 / 59).toFixed(1) + "," + (58 - r[i] * 56 / max).toFixed(1)).join(" ");
    $("graph-up").setAttribute("points", line(0));
    $("graph-down").setAttribute("points", line(1));
    const last = rates[rates.length - 1] || [0, 0];
    setText("rate", "↓ " + size(last[1]) + "/s  ↑ " + size(last[0]) + "/s");
  }

  function homepages(urls) {
    const list = $("homepages");
    const safe = urls.filter((u) => /^https?:\/\//i.test(u));
    $("home-card").hidden = safe.length === 0;
    if (list.dataset.shown === safe.join("\n")) return;
    list.dataset.shown = safe.join("\n");
    list.replaceChildren(...safe.map((u) => {
      const li = document.createElement("li"), a = document.createElement("a");
      a.href = u; a.textContent = u; a.target = "_blank"; a.rel = "noopener noreferrer";
      li.append(a);
      return li;
    }));
  }

  function updates(up, rl) {
    $("upgrade").hidden = !up.state;
    $("remote-list").hidden = !rl.state;
    $("updates-card").hidden = !up.state && !rl.state;
    if (up.state) {
      setText("upgrade-text", t("upgrade_" + up.state, { version: up.version }));
      const bar = $("upgrade-progress");
      bar.hidden = up.state !== "downloading";
      if (up.total) { bar.max = up.total; bar.value = up.bytes || 0; } else bar.removeAttribute("value");
      setText("upgrade-how", up.state === "downloaded" ? (up.command || up.message || "") : (up.error || ""));
    }
    if (rl.state) {
      setText("remote-text", t("remote_" + rl.state, { imported: rl.imported || 0 }));
      const bar = $("remote-progress");
      bar.hidden = rl.state !== "downloading";
      bar.removeAttribute("value");
    }
  }

  function notices(items) {
    const list = $("notices");
    const key = items.map((n) => n.time + n.text).join("\n") + lang;
    if (list.dataset.shown === key) return;
    list.dataset.shown = key;
    list.replaceChildren(...items.slice().reverse().map((n) => {
      const li = document.createElement("li"), time = document.createElement("time");
      li.className = n.level;
      time.dateTime = n.time;
      time.textContent = n.time ? new Date(n.time).toLocaleTimeString(lang) : "";
      const known = texts.en["n_" + n.kind];
      li.append(time, " ", document.createTextNode(known ? t("n_" + n.kind, n.args) : n.text));
      return li;
    }));
  }

  function regionOptions(regions, chosen) {
    const select = $("region");
    const wanted = ["", ...new Set([...regions, ...(chosen ? [chosen] : [])])];
    const key = wanted.join(",") + lang;
    if (select.dataset.shown === key) return;
    select.dataset.shown = key;
    const current = formFilled ? select.value : chosen;
    select.replaceChildren(...wanted.map((code) => {
      const o = document.createElement("option");
      o.value = code;
      o.textContent = code ? regionName(code) : t("best");
      return o;
    }));
    select.value = current;
  }

  function fillSettings(st) {
    formFilled = true;
    $("region").value = st.egress_region;
    for (const box of document.querySelectorAll("input[name=protocols]")) box.checked = st.protocols.includes(box.value);
    $("upstream").value = st.upstream_proxy;
    $("split-own").checked = st.split_tunnel_own_region;
    $("split-regions").value = st.split_tunnel_regions.join(", ");
    $("whole-device").checked = st.whole_device;
  }

  // -- actions ------------------------------------------------------------------------
  $("toggle").addEventListener("click", async (e) => {
    e.target.disabled = true;
    try { await api("POST", "/api/" + (e.target.dataset.action || "disconnect"), {}); }
    catch (err) { alert(t("failed", { text: err.message })); }
    finally { e.target.disabled = false; }
  });

  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const text = $(button.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); }
      catch (e) { getSelection().selectAllChildren($(button.dataset.copy)); return; }
      button.textContent = t("copied");
      setTimeout(() => { button.textContent = t("copy"); }, 1500);
    });
  }

  $("settings").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {
      egress_region: $("region").value,
      protocols: [...document.querySelectorAll("input[name=protocols]:checked")].map((b) => b.value),
      upstream_proxy: $("upstream").value.trim(),
      split_tunnel_own_region: $("split-own").checked,
      split_tunnel_regions: $("split-regions").value.split(/[\s,،、，]+/).filter(Boolean),
      whole_device: $("whole-device").checked,
    };
    const result = $("settings-result");
    try {
      fillSettings(await api("POST", "/api/settings", body));
      result.className = "ok"; result.textContent = t("saved");
    } catch (err) { result.className = "bad"; result.textContent = t("problem", { text: err.message }); }
  });

  function feedbackBody() {
    return { message: $("fb-message").value, email: $("fb-email").value, diagnostics: $("fb-diagnostics").checked };
  }

  async function preview() {
    if (!$("fb-preview").open) return;
    try { $("fb-preview-text").textContent = JSON.stringify(await api("POST", "/api/feedback/preview", feedbackBody()), null, 2); }
    catch (err) { $("fb-preview-text").textContent = t("failed", { text: err.message }); }
  }
  $("fb-preview").addEventListener("toggle", preview);
  for (const id of ["fb-message", "fb-email", "fb-diagnostics"]) {
    $(id).addEventListener("input", () => { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 300); });
  }

  $("feedback").addEventListener("submit", async (e) => {
    e.preventDefault();
    const result = $("fb-result");
    if (!$("fb-message").value.trim()) { result.className = "bad"; result.textContent = t("fb_empty"); return; }
    const button = e.target.querySelector("button[type=submit]");
    button.disabled = true;
    result.className = ""; result.textContent = t("fb_sending");
    try {
      const sent = await api("POST", "/api/feedback", feedbackBody());
      result.className = "ok"; result.textContent = t(sent.uploaded ? "fb_sent" : "fb_saved");
      $("fb-message").value = "";
    } catch (err) { result.className = "bad"; result.textContent = t("failed", { text: err.message }); }
    finally { button.disabled = false; }
  });

  $("lang").addEventListener("change", () => { lang = $("lang").value; localStorage.setItem(LANG_KEY, lang); applyLang(); });

  // -- start --------------------------------------------------------------------------
  async function start() {
    try { texts = await (await fetch("/static/i18n.json")).json(); } catch (e) { /* English keys */ }
    lang = chooseLang();
    applyLang();
    const events = new EventSource("/api/events?token=" + encodeURIComponent(token));
    events.onmessage = (e) => {
      state = JSON.parse(e.data);
      $("offline").hidden = true;
      document.body.dataset.state = state.state;
      render(state);
    };
    events.onerror = () => { $("offline").hidden = false; };
  }
  start();
})();
