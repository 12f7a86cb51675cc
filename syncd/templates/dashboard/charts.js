// The tenant page's charts, drawn with the vendored Chart.js (syncd/templates/vendor/) from
// the JSON in #desk-data (syncd/desk.py). Without Chart.js (a blocked script) the tables
// beside each chart still carry every number.
(function(){
// Every table but the contact matrix reflows into cards on a phone (desk.css, .stack):
// each cell is labelled with its column's header.
document.querySelectorAll('main table:not(.matrix):not(.stack)').forEach(t => {
  const heads = Array.from(t.querySelectorAll('thead th')).map(th => th.textContent);
  if(!heads.length) return;
  t.classList.add('stack');
  t.querySelectorAll('tbody tr').forEach(tr => Array.from(tr.children).forEach((td, i) => {
    if(heads[i] && !td.hasAttribute('data-label')) td.setAttribute('data-label', heads[i]); }));
});
const node = document.getElementById('desk-data');
if(!node || typeof Chart === 'undefined') return;
const D = JSON.parse(node.textContent);
Chart.defaults.font.size = 13;
Chart.defaults.animation = false;  // print, screenshots and tests see the final picture
const trend = document.getElementById('trend-chart');
if(trend){
  const T = D.trend.chart;
  new Chart(trend, {type: 'line', data: {labels: T.labels, datasets: T.series.map((s, i) => ({
      label: s.label, data: s.data, yAxisID: s.axis, spanGaps: true,
      borderColor: i ? '#12b76a' : '#f79009', backgroundColor: i ? '#12b76a' : '#f79009'}))},
    options: {responsive: true, maintainAspectRatio: false,
      scales: {y: {beginAtZero: true, position: 'left'},
               y1: {beginAtZero: true, max: 100, position: 'right', grid: {drawOnChartArea: false}}}}});
}
const rules = document.getElementById('rules-chart');
if(rules && D.rules.length){
  new Chart(rules, {type: 'bar', data: {labels: D.rules.map(r => r.title),
      datasets: [{data: D.rules.map(r => r.count), backgroundColor: '#f79009'}]},
    options: {indexAxis: 'y', responsive: true, maintainAspectRatio: false,
      plugins: {legend: {display: false}},
      onClick: (event, items) => { if(items.length && D.rules[items[0].index].href)
        window.location.href = D.rules[items[0].index].href; }}});
}
document.body.setAttribute('data-charts', '1');
})();
