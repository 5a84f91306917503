// The dashboard's charts: accrued and settled per accounting period, one chart per currency.
// The data and the translated series names come from the page (data-chart).
(function () {
  var charts = [];
  document.querySelectorAll(".chart[data-chart]").forEach(function (element) {
    var data = JSON.parse(element.dataset.chart);
    var chart = echarts.init(element);
    chart.setOption({
      tooltip: { trigger: "axis" },
      legend: {},
      xAxis: { type: "category", data: data.periods },
      yAxis: { type: "value" },
      series: [
        { name: data.names[0], type: "bar", data: data.accrued },
        { name: data.names[1], type: "bar", data: data.settled }
      ]
    });
    charts.push(chart);
  });
  window.addEventListener("resize", function () {
    charts.forEach(function (chart) { chart.resize(); });
  });
})();
