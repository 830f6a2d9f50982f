// The edit box of a template or brand page: on every change (after a short pause) the text
// is linted and previewed by the server, the same checks `belofte check` runs; the answer
// replaces the problems list and the preview. Served from the binary; no library.
(function () {
  "use strict";
  var form = document.getElementById("edit");
  if (!form) return;
  var box = form.querySelector("textarea[name=text]");
  var problems = document.getElementById("problems");
  var preview = document.getElementById("preview");
  var lintUrl = form.getAttribute("data-lint");
  var previewUrl = form.getAttribute("data-preview");
  // Templates are named by "path", brands by "id".
  var key = form.getAttribute("data-key");
  var name = form.getAttribute("data-name");
  var timer = null;
  var asked = 0;

  function showProblems(list) {
    problems.textContent = "";
    if (list.length === 0) {
      var ok = document.createElement("p");
      ok.className = "ok";
      ok.textContent = "No problems: this can be published.";
      problems.appendChild(ok);
      return;
    }
    var ul = document.createElement("ul");
    list.forEach(function (p) {
      var li = document.createElement("li");
      li.className = "problem";
      li.textContent = (p.line ? "line " + p.line + ": " : "") + p.message + " (" + p.file + ")";
      ul.appendChild(li);
    });
    problems.appendChild(ul);
  }

  function check() {
    var mine = ++asked;
    var body = { text: box.value };
    body[key] = name;
    // The console's own API (console.js): the session cookie and the page's CSRF token.
    window.belofte.api("POST", lintUrl, body)
      .then(function (answer) {
        if (mine !== asked) return;
        showProblems(answer.body.problems || []);
        if (!previewUrl || !preview) return;
        return window.belofte.api("POST", previewUrl, body).then(function (answer) {
          // The server's rendering of the preview, every value in it escaped there.
          if (mine === asked && typeof answer.body.html === "string") preview.innerHTML = answer.body.html;
        });
      })
      .catch(function (e) { problems.textContent = "The check did not answer: " + e; });
  }

  box.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
})();
