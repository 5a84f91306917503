// The dashboard's chart: accrued and settled per accounting period (data from the page).
(function () {
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var chart = echarts.init(document.getElementById("chart"));
  chart.setOption({
    tooltip: { trigger: "axis" },
    legend: {},
    xAxis: { type: "category", data: data.periods },
    yAxis: { type: "value" },
    series: [
      { name: document.documentElement.lang === "zh-CN" ? "计提" : "Accrued", type: "bar", data: data.accrued },
      { name: document.documentElement.lang === "zh-CN" ? "结算" : "Settled", type: "bar", data: data.settled }
    ]
  });
  window.addEventListener("resize", function () { chart.resize(); });
})();
