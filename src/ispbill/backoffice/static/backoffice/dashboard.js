/* Draws the dashboard's charts with Chart.js from the JSON the page carries
   (<script type="application/json" id="chart-…">). Amounts arrive in paisa. */
(function () {
  "use strict";
  function taka(paisa, decimals) {
    var amount = paisa / 100;
    return "৳ " + amount.toLocaleString("en-US", {minimumFractionDigits: decimals, maximumFractionDigits: decimals});
  }
  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") { return; }
    var spec = JSON.parse(source.textContent);
    var valueAxis = spec.horizontal ? "x" : "y";
    var categoryAxis = spec.horizontal ? "y" : "x";
    var scales = {};
    scales[valueAxis] = {
      beginAtZero: true, stacked: spec.stacked,
      ticks: {callback: function (v) { return spec.money ? taka(v, 0) : v.toLocaleString("en-US"); }}
    };
    scales[categoryAxis] = {stacked: spec.stacked, ticks: {autoSkip: true, maxRotation: 0}};
    new Chart(canvas, {
      type: spec.type,
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map(function (d) {
          return {label: d.label, data: d.data, backgroundColor: d.colour, borderWidth: 0};
        })
      },
      options: {
        indexAxis: spec.horizontal ? "y" : "x",
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: {
          legend: {display: spec.datasets.length > 1, position: "bottom"},
          tooltip: {callbacks: {label: function (ctx) {
            var v = spec.horizontal ? ctx.parsed.x : ctx.parsed.y;
            return ctx.dataset.label + ": " + (spec.money ? taka(v, 2) : v.toLocaleString("en-US"));
          }}}
        },
        scales: scales
      }
    });
    canvas.dataset.drawn = "1";
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  });
})();
