// Refreshes a dashboard's panels at its interval: each image is fetched again with a
// cache-busting parameter and swapped in once loaded, so a slow panel never shows blank.
// Without JavaScript the page still works; reloading it refreshes the panels.
(function () {
  "use strict";
  var panels = document.getElementById("panels");
  if (!panels) { return; }
  var seconds = parseInt(panels.getAttribute("data-refresh-secs"), 10);
  if (!(seconds > 0)) { return; }
  var note = document.getElementById("refreshed");
  function refresh() {
    if (document.hidden) { return; }
    var images = panels.querySelectorAll("img[data-src]");
    var stamp = Date.now();
    images.forEach(function (img) {
      var next = new Image();
      next.onload = function () { img.src = next.src; };
      next.onerror = function () { img.src = next.src; };
      next.src = img.getAttribute("data-src") + "&_=" + stamp;
    });
    if (note) {
      note.textContent = "; last at " + new Date(stamp).toLocaleTimeString();
    }
  }
  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { refresh(); }
  });
}());
