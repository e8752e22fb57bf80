// compute-to-ssi: draws a chart (uPlot) from the table it illustrates, and
// redraws it when the page's live parts refresh. A chart element names its
// table with `data-chart-for`; the table's rows that carry `data-x` are the
// points, and their cells with `data-series` and `data-value` the series.
// The table stays on the page: it is what reads without JavaScript.
(function () {
  "use strict";
  if (typeof uPlot === "undefined") { return; }
  var palette = ["#0b5cad", "#a1101a", "#17602a", "#7a4d00", "#5b2a86", "#00656e"];

  function read(table) {
    var xs = [], names = [], values = {};
    table.querySelectorAll("tr[data-x]").forEach(function (row) {
      xs.push(parseFloat(row.getAttribute("data-x")));
      var seen = {};
      row.querySelectorAll("[data-series]").forEach(function (cell) {
        var name = cell.getAttribute("data-series");
        if (!(name in values)) { names.push(name); values[name] = []; }
        var v = parseFloat(cell.getAttribute("data-value"));
        values[name][xs.length - 1] = isFinite(v) ? v : null;
        seen[name] = true;
      });
    });
    var data = [xs];
    names.forEach(function (name) {
      var column = values[name];
      for (var i = 0; i < xs.length; i++) { if (column[i] === undefined) { column[i] = null; } }
      data.push(column);
    });
    return { names: names, data: data };
  }

  function draw(el) {
    var table = document.getElementById(el.getAttribute("data-chart-for"));
    if (!table) { return; }
    var time = table.getAttribute("data-chart-x") === "time";
    var got = read(table);
    el.setAttribute("data-points", String(got.data[0].length));
    var key = JSON.stringify(got.data);
    if (el.getAttribute("data-drawn") === key) { return; }
    el.setAttribute("data-drawn", key);
    while (el.firstChild) { el.removeChild(el.firstChild); }
    if (got.data[0].length === 0) { return; }
    var series = [{ label: time ? "time" : "round" }];
    got.names.forEach(function (name, i) {
      series.push({ label: name, stroke: palette[i % palette.length], width: 2,
                    points: { show: true, size: 6 }, scale: i === 0 ? "y" : "y" + i });
    });
    // Rounds are whole numbers: no tick between two of them.
    var axes = [time ? {} : { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }];
    got.names.forEach(function (name, i) {
      axes.push({ scale: i === 0 ? "y" : "y" + i, side: i === 0 ? 3 : 1,
                  grid: { show: i === 0 }, label: name });
    });
    new uPlot({
      width: Math.max(320, el.clientWidth - 8),
      height: Math.max(200, el.clientHeight - 40),
      scales: { x: { time: time } },
      series: series,
      axes: axes
    }, got.data, el);
  }

  function drawAll() { document.querySelectorAll("[data-chart-for]").forEach(draw); }
  document.addEventListener("live-updated", drawAll);
  drawAll();
})();
