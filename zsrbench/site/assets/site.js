/* zsrbench site: sortable and filterable leaderboard tables. Plain JavaScript, no dependencies, nothing
 * loaded from the network, so the pages work from file:// as well as from a web server.
 *
 * Sorting: click (or press Enter on) a header of a table with class "sortable". Number columns
 * (data-sort="number") sort on each cell's data-v attribute, the exact value, never on the text with its
 * "± ..." interval; cells without a value always go last. The first click sorts numbers high to low and
 * text A to Z (a header's data-first="asc" or "desc" overrides this), the next click reverses. The header
 * carries aria-sort. Ties keep their previous order.
 *
 * Filtering: the box #filter hides rows of every "lb" table whose data-name lacks one of the typed words;
 * the checkbox #show-reported hides or shows rows of class "reported". #row-count says how many are shown.
 */
(function () {
  "use strict";

  function sortKey(cell, numeric) {
    if (!cell) { return null; }
    var v = cell.getAttribute("data-v");
    if (numeric) {
      if (v === null || v === "") { return null; }
      var n = parseFloat(v);
      return isNaN(n) ? null : n;
    }
    return (v !== null ? v : cell.textContent).trim().toLowerCase();
  }

  function sortBy(table, th) {
    var headers = Array.prototype.slice.call(th.parentNode.children);
    var index = headers.indexOf(th);
    var numeric = th.getAttribute("data-sort") === "number";
    var state = th.getAttribute("aria-sort");
    var descending;
    if (state === "descending") { descending = false; }
    else if (state === "ascending") { descending = true; }
    else {
      var first = th.getAttribute("data-first");
      descending = first ? first === "desc" : numeric;
    }
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var body = table.tBodies[0];
    var keyed = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, key: sortKey(row.cells[index], numeric), i: i };
    });
    keyed.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        if (a.key === b.key) { return a.i - b.i; }
        return a.key === null ? 1 : -1;
      }
      var d = a.key < b.key ? -1 : (a.key > b.key ? 1 : 0);
      return (descending ? -d : d) || a.i - b.i;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
  }

  function applyFilters() {
    var box = document.getElementById("filter");
    var toggle = document.getElementById("show-reported");
    var words = (box ? box.value : "").toLowerCase().split(/\s+/).filter(function (w) { return w; });
    var showReported = !toggle || toggle.checked;
    var shown = 0, total = 0;
    document.querySelectorAll("table.lb tbody tr").forEach(function (row) {
      var name = (row.getAttribute("data-name") || "").toLowerCase();
      var hide = (!showReported && row.classList.contains("reported")) ||
        words.some(function (w) { return name.indexOf(w) < 0; });
      row.hidden = hide;
      if (row.closest("table").id === "leaderboard" || row.closest("table").id === "top") {
        total += 1;
        if (!hide) { shown += 1; }
      }
    });
    var count = document.getElementById("row-count");
    if (count) { count.textContent = shown + " of " + total + " rows shown"; }
  }

  function init() {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("thead th").forEach(function (th) {
        th.addEventListener("click", function () { sortBy(table, th); });
        th.addEventListener("keydown", function (ev) {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(table, th); }
        });
      });
    });
    var box = document.getElementById("filter");
    if (box) { box.addEventListener("input", applyFilters); }
    var toggle = document.getElementById("show-reported");
    if (toggle) { toggle.addEventListener("change", applyFilters); }
    applyFilters();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
