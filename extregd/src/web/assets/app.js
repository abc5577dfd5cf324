// extregd catalogue: progressive enhancement only (the pages work without
// it). Search as you type through the API's own search, and copy buttons.
// Text from the API is only ever set with textContent, never as HTML.
(function () {
  "use strict";

  document.querySelectorAll("button.copy-btn").forEach(function (b) {
    var target = document.getElementById(b.getAttribute("data-copy"));
    if (!target) return;
    b.hidden = false;
    b.addEventListener("click", function () {
      var text = target.textContent;
      var select = function () {
        var r = document.createRange();
        r.selectNodeContents(target);
        var s = window.getSelection();
        s.removeAllRanges();
        s.addRange(r);
        b.textContent = "Selected: press Ctrl+C";
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () {
          b.textContent = "Copied";
          setTimeout(function () { b.textContent = "Copy"; }, 2000);
        }, select);
      } else {
        select();
      }
    });
  });

  var q = document.getElementById("q");
  var results = document.getElementById("results");
  var count = document.getElementById("count");
  if (!q || !results || !count || !window.fetch) return;
  var type = document.getElementById("type");
  var source = document.getElementById("source");
  var original = results.cloneNode(true);
  var originalCount = count.textContent;
  var timer = null;
  var seq = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function card(x) {
    var li = el("li", "card");
    var h = el("h2");
    var a = el("a", null, x.name);
    a.href = "/ext/" + encodeURIComponent(x.type) + "/" + encodeURIComponent(x.name);
    h.appendChild(a);
    li.appendChild(h);
    var meta = el("p", "meta");
    meta.appendChild(el("span", "badge type", x.type));
    meta.appendChild(document.createTextNode(" "));
    meta.appendChild(el("span", "version", x.version));
    if (x.prerelease) { meta.appendChild(document.createTextNode(" ")); meta.appendChild(el("span", "badge pre", "pre-release")); }
    if (x.stale) { meta.appendChild(document.createTextNode(" ")); meta.appendChild(el("span", "badge stale", "stale")); }
    meta.appendChild(document.createTextNode(" "));
    meta.appendChild(el("span", "badge source", x.source));
    li.appendChild(meta);
    if (x.description) li.appendChild(el("p", "desc", x.description));
    return li;
  }

  function show(list, total) {
    while (results.firstChild) results.removeChild(results.firstChild);
    list.forEach(function (x) { results.appendChild(card(x)); });
    var n = list.length;
    count.textContent = total + (total === 1 ? " extension" : " extensions") +
      (total > n ? ", showing the best " + n : "");
  }

  function run() {
    var text = q.value.trim();
    var mine = ++seq;
    var params = new URLSearchParams();
    if (text) params.set("q", text);
    if (type && type.value) params.set("type", type.value);
    if (source && source.value) params.set("source", source.value);
    history.replaceState(null, "", "/" + (params.toString() ? "?" + params : ""));
    if (!text) {
      results.replaceWith(original.cloneNode(true));
      results = document.getElementById("results");
      count.textContent = originalCount;
      return;
    }
    params.delete("source");
    params.set("limit", "50");
    fetch("/api/v1/extensions/search?" + params, { headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) return r.json().then(function (e) { throw new Error(e.message || r.status); });
        var total = parseInt(r.headers.get("X-Total-Count") || "0", 10);
        return r.json().then(function (list) { return [list, total]; });
      })
      .then(function (res) {
        if (mine !== seq) return;
        var list = res[0];
        var total = res[1];
        if (source && source.value) {
          list = list.filter(function (x) { return x.source === source.value; });
          total = list.length;
        }
        show(list, total);
      })
      .catch(function (e) {
        if (mine === seq) count.textContent = "Search failed: " + e.message;
      });
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(run, 150);
  }
  q.addEventListener("input", soon);
  if (type) type.addEventListener("change", function () { if (q.value.trim()) soon(); });
  if (source) source.addEventListener("change", function () { if (q.value.trim()) soon(); });
})();
