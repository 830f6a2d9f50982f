// belofte console: the little JavaScript the pages use. Served from the binary under
// /console/static/ (the Content-Security-Policy allows no other script).
"use strict";

// `belofte.api("POST", "/console/api/outbox/7/retry", body)`: the console's JSON API with
// the session cookie and the page's CSRF token; resolves to {status, body}.
window.belofte = {
  csrf: function () {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  },
  api: function (method, path, body) {
    var init = { method: method, headers: { "X-CSRF-Token": window.belofte.csrf() }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      return r.text().then(function (t) {
        var parsed = t;
        try { parsed = JSON.parse(t); } catch (e) { /* not JSON: the text */ }
        return { status: r.status, body: parsed };
      });
    });
  }
};

// A form with data-confirm="…" asks before it is sent (cancelling a message).
document.addEventListener("submit", function (ev) {
  var q = ev.target.getAttribute && ev.target.getAttribute("data-confirm");
  if (q && !window.confirm(q)) {
    ev.preventDefault();
  }
});
