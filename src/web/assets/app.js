// Progressive enhancement of the discovery page. Everything works without it: the search form is a
// plain GET form, the pager and facets are links, and "check now" is a GET of the API endpoint.
// With it: the results follow the form as you type (the URL follows too, so back/forward and
// bookmarks keep working), "check now" updates the badge in place, commands can be copied.
// It never builds HTML from data: swapped-in markup is the server's own escaped page, and every
// value from the API is set with textContent.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);

  // --- live search -------------------------------------------------------------------------
  // Listeners sit on the document, so they keep working when the form itself is replaced.
  if ($("#search")) {
    let timer = 0;
    let inflight = null;
    const urlOfForm = () => {
      const params = new URLSearchParams();
      for (const [k, v] of new FormData($("#search"))) {
        if (typeof v === "string" && v.trim() !== "") params.append(k, v.trim());
      }
      const qs = params.toString();
      return qs ? "/?" + qs : "/";
    };
    // push: a new search typed here (keep what is being typed, refresh the counts in the selects);
    // otherwise back/forward, where the whole form follows the URL.
    const load = async (url, push) => {
      if (inflight) inflight.abort();
      inflight = new AbortController();
      try {
        const res = await fetch(url, { signal: inflight.signal, headers: { Accept: "text/html" } });
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        for (const id of ["results", "facets", "search"]) {
          const fresh = doc.getElementById(id);
          const old = document.getElementById(id);
          if (!fresh || !old) continue;
          if (id === "search" && push) {
            for (const sel of ["registry_type", "storage_type", "health"]) {
              const a = old.querySelector("#" + sel), b = fresh.querySelector("#" + sel);
              if (a && b) for (let i = 0; i < a.options.length && i < b.options.length; i++) a.options[i].textContent = b.options[i].textContent;
            }
            continue;
          }
          old.replaceWith(document.importNode(fresh, true));
        }
        if (push) history.pushState(null, "", url);
      } catch (e) {
        if (e.name !== "AbortError") window.location.href = url;
      }
    };
    const schedule = (delay) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const url = urlOfForm();
        if (url !== location.pathname + location.search) load(url, true);
      }, delay);
    };
    const inForm = (e) => e.target.closest && e.target.closest("#search");
    document.addEventListener("input", (e) => {
      if (inForm(e) && e.target.matches("input[type=search], #meta_key, #meta_value, #min_uptime")) schedule(300);
    });
    document.addEventListener("change", (e) => {
      if (inForm(e) && e.target.matches("select, input[type=checkbox]")) schedule(0);
    });
    document.addEventListener("submit", (e) => {
      if (e.target.id !== "search") return;
      e.preventDefault();
      window.location.href = urlOfForm();
    });
    window.addEventListener("popstate", () => load(location.pathname + location.search, false));
  }

  // --- copy buttons ------------------------------------------------------------------------
  for (const button of document.querySelectorAll("button.copy")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }

  // --- check now -----------------------------------------------------------------------------
  const check = $("#check-form");
  if (check) {
    const labels = { healthy: "healthy", auth_required: "needs credentials", not_registry: "not a registry", unreachable: "unreachable" };
    const status = $("#check-status");
    check.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = $("button", check);
      button.disabled = true;
      status.textContent = "Checking…";
      const asked = Date.now();
      try {
        const res = await fetch(check.action, { headers: { Accept: "application/json" } });
        const body = await res.json();
        const r = body.data && body.data.status ? body.data : null;
        if (!r) {
          // e.g. 429 when every probe slot is busy: say so, and when to try again.
          const retry = res.headers.get("Retry-After");
          status.textContent = (body.error || ("The check answered HTTP " + res.status)) +
            (retry ? " (try again in " + retry + " s)" : "");
          return;
        }
        const badge = $("#health-badge");
        badge.className = "badge b-" + r.status;
        badge.textContent = labels[r.status] || r.status;
        const time = document.createElement("time");
        time.dateTime = r.checked_at;
        const at = Date.parse(r.checked_at);
        // Within the cooldown the service answers its stored result with an Age header; a result
        // older than the click is one too, whatever the headers say.
        const cached = res.headers.has("Age") || (!isNaN(at) && at < asked - 2000);
        time.textContent = cached ? "checked " + Math.round((Date.now() - at) / 1000) + " s ago" : "just now";
        badge.append(" ", time);
        fillHealth(r);
        status.textContent = (cached ? "Recent result, not probed again: checked at " + r.checked_at : "Checked at " + r.checked_at) +
          " (" + (labels[r.status] || r.status) + (body.success ? "" : ": " + (body.error || "")) + ")";
      } catch (err) {
        status.textContent = "The check failed: " + err.message;
      } finally {
        button.disabled = false;
      }
    });
    const fillHealth = (r) => {
      const table = $("#health-table");
      const never = $("#never-checked");
      if (never) never.remove();
      const tbody = $("tbody", table);
      tbody.replaceChildren();
      const ch = r.challenge;
      const rows = [
        ["verdict", labels[r.status] || r.status], ["checked at", r.checked_at], ["URL probed", r.url],
        ["HTTP status", r.status_code], ["reason", r.reason], ["latency", r.latency_ms == null ? null : r.latency_ms + " ms"],
        ["API version", r.api_version],
        ["auth challenge", ch ? [ch.scheme, ch.realm && "realm=" + ch.realm, ch.service && "service=" + ch.service].filter(Boolean).join(" ") : null],
        ["error", r.error], ["refused by", r.refused_by],
      ];
      for (const [k, v] of rows) {
        if (v == null) continue;
        const tr = tbody.insertRow();
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = k;
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.append(th, td);
      }
      table.hidden = false;
    };
  }
})();
