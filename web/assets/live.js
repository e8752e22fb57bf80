// compute-to-ssi: refreshes a page's live parts without a reload. Every
// element with a `data-live` attribute and an id is replaced by the element
// of the same id in a fresh copy of the page, every `data-live` milliseconds
// (at least 1000). Without JavaScript the page is the same, only static.
(function () {
  "use strict";
  var parts = document.querySelectorAll("[data-live][id]");
  if (parts.length === 0) { return; }
  var every = 1000000;
  parts.forEach(function (el) {
    var ms = parseInt(el.getAttribute("data-live"), 10);
    if (ms >= 1000 && ms < every) { every = ms; }
  });
  if (every === 1000000) { every = 5000; }
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var next = fresh.getElementById(el.id);
          if (next && next.innerHTML !== el.innerHTML) {
            el.innerHTML = next.innerHTML;
            el.dispatchEvent(new CustomEvent("live-updated", { bubbles: true }));
          }
        });
      })
      .catch(function () { /* the next refresh tries again */ })
      .finally(function () { window.setTimeout(refresh, every); });
  }
  window.setTimeout(refresh, every);
})();
