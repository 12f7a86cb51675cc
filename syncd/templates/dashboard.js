// The syncd dashboard: draws the report JSON embedded in the page (syncd/report_html.py).
(function(){
const R = JSON.parse(document.getElementById('report-data').textContent);
const $ = (id) => document.getElementById(id);
// The page's texts in the report's language (syncd/locale/ru/LC_MESSAGES/report.po, embedded
// by syncd/report_html.py): _('English') is the message id; {name} placeholders via fmt().
const TX = JSON.parse(($('report-texts')||{}).textContent||'{}'), LANG = R.language||'en';
const _ = (s) => TX[s]||s;
const fmt = (s, o) => s.replace(/\{(\w+)\}/g, (m, k) => (k in o ? o[k] : m));
const RT = R.rule_titles||{}, ST = R.stage_titles||{};
function el(tag, attrs, ...kids){const e=document.createElement(tag);
  for(const [k,v] of Object.entries(attrs||{})){if(v!==null&&v!==undefined)e.setAttribute(k,v);}
  for(const k of kids){if(k===null||k===undefined)continue;
    e.append(k instanceof Node?k:document.createTextNode(String(k)));}return e;}
function num(v, d){if(v===null||v===undefined)return '–';
  if(LANG!=='en')return new Intl.NumberFormat(LANG,{minimumFractionDigits:d||0,maximumFractionDigits:d||0}).format(v);
  const s=Number(v).toFixed(d||0);
  const p=s.split('.');p[0]=p[0].replace(/\B(?=(\d{3})+(?!\d))/g,',');return p.join('.');}
function pct(v){if(v===null||v===undefined)return '–';
  return LANG!=='en'?new Intl.NumberFormat(LANG,{style:'percent',minimumFractionDigits:1,maximumFractionDigits:1}).format(v)
    :(v*100).toFixed(1)+'%';}
const SVG='http://www.w3.org/2000/svg';
function sv(tag, attrs, text){const e=document.createElementNS(SVG,tag);
  for(const [k,v] of Object.entries(attrs||{}))e.setAttribute(k,v);
  if(text!==undefined)e.textContent=text;return e;}
function bars(rows, opts){ // rows: [{label, value, note}]
  const w=opts.width||560, rh=20, lw=opts.labelWidth||170, h=rows.length*rh+6;
  const max=Math.max(1e-9,...rows.map(r=>Math.abs(r.value)));
  const s=sv('svg',{width:'100%',viewBox:`0 0 ${w} ${h}`,role:'img',style:`max-width:${w}px`});
  rows.forEach((r,i)=>{const y=i*rh+3, bw=Math.max(1,(w-lw-(opts.noteWidth||90))*Math.abs(r.value)/max);
    const mc=Math.floor(lw/6.8); // characters that fit the label column
    s.append(sv('text',{x:0,y:y+13},r.label.length>mc?r.label.slice(0,mc-1)+'…':r.label));
    s.append(sv('rect',{x:lw,y:y+2,width:bw,height:rh-6,rx:3,
      fill:r.value<0?'#f97066':(opts.color||'#2e6be6'),'data-value':r.value}));
    s.append(sv('text',{x:lw+bw+6,y:y+13},r.note!==undefined?r.note:num(r.value,opts.digits)));});
  return s;}
function table(head, rows){const t=el('table',{}),tr=el('tr',{});
  head.forEach(h=>tr.append(el('th',{},h)));t.append(el('thead',{},tr));
  const b=el('tbody',{});rows.forEach(r=>b.append(r));t.append(b);return t;}
// The desk (syncd/desk.py): each rate's counts ("5 of 16"), small samples, links to deals.
const DK=R.desk||{rates:{},links:{},texts:{}}, DL=DK.links||{};
const link=(tpl,o)=>tpl?fmt(tpl,Object.fromEntries(Object.entries(o).map(([k,v])=>[k,encodeURIComponent(v)]))):null;
function card(key,label,value,href){const r=(DK.rates||{})[key];
  return el('div',{class:'card'},
  href?el('a',{class:'v num',href:href,'data-k':key},value):el('div',{class:'v','data-k':key},value),
  el('div',{class:'l'},label),
  r&&r.of?el('div',{class:'of','data-k':key+'-of','data-n':r.n,'data-total':r.total},r.of):null,
  r&&r.small?el('span',{class:'small-sample',title:DK.texts.small_title},DK.texts.small):null);}
const K=R.kpis||{}, P=R.people||{employees:[],managers:[]};

// header
$('tenant').textContent=R.tenant;
const ls=R.last_sync; const status=ls?ls.status:'none';
$('meta').append(...[fmt(_('{plugin} · Sales Book {salesbook} · as of {as_of} · last sync '),
    {plugin:R.plugin,salesbook:R.salesbook_title||R.salesbook,as_of:R.as_of.slice(0,16).replace('T',' ')}),
  el('span',{class:'badge '+status,'data-k':'sync-status'},status),
  ls&&ls.finished_at?' '+ls.finished_at.slice(0,16).replace('T',' '):'',
  ls&&ls.error?el('span',{class:'neg'},' '+ls.error):null].filter(x=>x!==null&&x!==''));

// summary cards
const nc=K.new_clients||{};
$('cards').append(
  card('violations-open',_('open violations'),num(R.violations_open),DL.deals),
  card('open-deals',_('open deals'),num(R.counts?R.counts.open_deals:null)),
  card('win-rate',_('win rate'),pct(K.win_rate?K.win_rate.rate:null)),
  card('new-clients',_('new clients')+(nc.plan!==null&&nc.plan!==undefined?fmt(_(' (plan {plan})'),{plan:nc.plan}):''),num(nc.total)),
  card('nps','NPS',K.nps&&K.nps.nps!==null?num(K.nps.nps,1):'–'),
  card('churn',_('churn'),pct(K.churn?K.churn.rate:null)),
  card('clv','CLV, '+R.currency,num(K.clv?K.clv.clv:null)),
  card('repeat',_('repeat clients'),pct(K.repeat_clients?K.repeat_clients.share:null)),
  card('upsale',_('up-sale revenue')+', '+R.currency,num(K.upsale_revenue?K.upsale_revenue.revenue:null)));
const pi=K.plan_inversion;
$('plan').append(pi?el('p',{},_('Plan inversion: revenue plan '),el('b',{'data-k':'plan-revenue'},num(pi.revenue_plan)),
  _(' ÷ average won deal '),num(pi.average_won_value),' = ',el('b',{'data-k':'plan-deals'},num(pi.deals_needed)),
  fmt(_(' deals; at {conversion} lead→won conversion = '),{conversion:pct(pi.lead_to_won_conversion)}),
  el('b',{'data-k':'plan-leads'},num(pi.leads_needed)),_(' leads a month.'))
  : el('p',{class:'muted'},_('Plan inversion: no revenue plan in the Sales Book (kpis.revenue_per_month) or no won deals yet.')));

// violations
const vr=Object.entries(R.violations_by_rule||{}).sort((a,b)=>b[1]-a[1]);
if($('violations'))$('violations').append(vr.length?bars(vr.map(([k,v])=>({label:RT[k]||k,value:v})),{color:'#f79009',labelWidth:260})
  :el('p',{class:'muted'},_('No open violations.')));
const owners=R.violations_by_owner||{}, rules=vr.map(x=>x[0]);
const names={};(P.employees||[]).forEach(e=>names[e.user_id]=e.name);
((K.win_rate||{}).by_owner||[]).forEach(o=>{if(o.owner_id)names[o.owner_id]=o.name;});
$('by-owner').append(table([_('owner'),...rules.map(r=>RT[r]||r),_('total')],Object.entries(owners).map(([o,c])=>{
  const tr=el('tr',{'data-owner':o},el('td',{},names[o]||(o==='(none)'?_('(no owner)'):o)));
  const cell=(n,href)=>href&&n?el('a',{class:'num',href:href},n):n;
  let t=0;rules.forEach(r=>{t+=c[r]||0;tr.append(el('td',{},cell(c[r]||'',o==='(none)'?null:link(DL.owner_rule,{owner:o,rule:r}))));});
  tr.append(el('td',{class:'total'},cell(t,o==='(none)'?null:link(DL.owner,{owner:o}))));return tr;})));

// client karma and segments
const ck=(R.client_karma||[]).slice(0,15);
$('karma').append(ck.length?bars(ck.map(c=>({label:c.company_name||c.company_id,value:c.karma})),{digits:2,color:'#12b76a'})
  :el('p',{class:'muted'},_('No client karma yet.')));
$('segments').append(table([_('segment'),_('clients'),_('mean karma')],(R.segments||[]).map(s=>
  el('tr',{'data-segment':s.segment},el('td',{},s.segment==='(none)'?_('(no segment)'):s.segment),el('td',{},s.companies),
     el('td',{class:'mean'},num(s.mean_karma,2))))));

// leaderboard
const cur=P.period, prev=(P.months||[]).slice(-2)[0];
function board(period){const rows=(P.employees||[]).filter(e=>e.period===period)
  .sort((a,b)=>b.karma-a.karma);return rows;}
[['board-current',cur],['board-previous',prev]].forEach(([id,period])=>{
  const rows=board(period);$(id+'-title').textContent=period||'';
  $(id).append(rows.length?table([_('employee'),_('karma'),_('bonus')],rows.map((e,i)=>
    el('tr',{'data-user':e.user_id,'data-period':e.period},el('td',{},(i+1)+'. '+e.name),
      el('td',{class:'karma'+(e.karma<0?' neg':'')},num(e.karma,2)),
      el('td',{class:'bonus'},num(e.bonus,2)+(e.bonus_final?'':' *')))))
    :el('p',{class:'muted'},_('No karma this month.')));});
const mgr=(P.managers||[]).filter(m=>m.period===cur);
$('managers').append(mgr.length?table([_('manager'),_('team'),_('karma (mean)')],mgr.map(m=>
  el('tr',{'data-manager':m.user_id},el('td',{},m.name),el('td',{},m.team_size),
     el('td',{class:'karma'},num(m.karma,2)))))
  :el('p',{class:'muted'},P.teams_from?_('No manager karma this month.'):_('No teams: name them in the tenant file (mapping.teams) or use a CRM with departments.')));

// funnel
const fn=K.funnel||[];
$('funnel').append(bars(fn.map(f=>({label:ST[f.stage]||f.title||f.stage,value:f.entered,
  note:fmt(_('{entered} in · {conversion} on · median {median}'),{entered:f.entered,conversion:pct(f.conversion),
    median:f.median_days===null?'–':fmt(_('{days} d'),{days:num(f.median_days,1)})})})),{width:900,labelWidth:170,noteWidth:260,color:'#6172f3'}));
$('funnel-table').append(table([_('stage'),_('entered'),_('moved on'),_('lost'),_('open'),_('conversion'),_('median days'),_('mean days'),_('max days')],
  fn.map(f=>el('tr',{'data-stage':f.stage},el('td',{},ST[f.stage]||f.title),el('td',{class:'entered'},f.entered),
    el('td',{class:'moved'},f.moved_on),el('td',{class:'lost'},f.lost),el('td',{},f.open_now),
    el('td',{class:'conversion'},pct(f.conversion)),el('td',{class:'median'},f.median_days===null?'–':num(f.median_days,1)),
    el('td',{},f.mean_days===null?'–':num(f.mean_days,1)),
    el('td',{class:f.max_days!==null&&f.median_days>f.max_days?'neg':''},f.max_days===null?'–':f.max_days)))));

// forward moves
const fm=K.forward_moves||{weeks:[],owners:[],target:5};
$('moves-target').textContent=fm.target;
$('moves').append(table([_('employee'),...fm.weeks.map(w=>w.slice(5)),_('mean')],fm.owners.map(o=>{
  const tr=el('tr',{'data-owner':o.owner_id},el('td',{},o.name));
  fm.weeks.forEach(w=>{const c=o.weeks[w];const n=c?c.net:0;
    tr.append(el('td',{class:n>=fm.target?'on':'off','data-week':w},n));});
  tr.append(el('td',{},num(o.mean_net,2)));return tr;})));

// lead sources
$('sources').append(table([_('lead source'),_('deals'),_('won'),_('conversion')],(K.lead_sources||[]).map(s=>
  el('tr',{'data-source':s.source},el('td',{},s.source==='(none)'?_('(no source)'):s.source),el('td',{},s.deals),el('td',{},s.won),
     el('td',{},pct(s.conversion))))));

// contact matrix
const M=R.contact_matrix||{months:[],rows:[]};
const mt=el('table',{class:'matrix'}),hr=el('tr',{},el('th',{},''));
M.months.forEach(m=>hr.append(el('th',{title:m},m.slice(2))));mt.append(hr);
M.rows.slice(0,60).forEach(r=>{const tr=el('tr',{'data-company':r.company_id},
  el('td',{class:'name',title:[r.channel,r.sub_channel,r.region].filter(Boolean).join(' / ')},r.company));
  M.months.forEach(m=>{const c=r.cells[m];let cls='m0',txt='';
    if(c){const n=c.call+c.visit;
      cls=c.planned?'mp':c.contract?'mk':n>=4?'m3':n>=2?'m2':n?'m1':'m0';
      txt=c.contract?'K':n?String(n):'';}
    tr.append(el('td',{class:cls,'data-month':m,
      title:c?fmt(_('{month}: {calls} call(s), {visits} visit(s), {contracts} contract(s)'),{month:m,calls:c.call,visits:c.visit,contracts:c.contract})+(c.planned?_(' planned'):''):m},txt));});
  mt.append(tr);});
$('matrix').append(mt);
if(M.rows_total>M.rows.length)$('matrix').append(el('p',{class:'muted'},fmt(_('More clients in the JSON report: {n}.'),{n:M.rows_total-M.rows.length})));
// records that could not be read or stored, writes the CRM rejected
const QR=R.quarantine||[], WF=R.write_failures||[];
if(QR.length||WF.length){$('bad-records').hidden=false;
  $('quarantine').append(QR.length?table([_('stream'),_('id'),_('problem'),_('first seen'),_('last seen'),_('tries')],
    QR.map(q=>el('tr',{'data-quarantined':q.stream+'/'+q.external_id},el('td',{},q.stream),
      el('td',{},q.external_id),el('td',{class:'neg'},q.problem),
      el('td',{},(q.first_seen_at||'').slice(0,16).replace('T',' ')),
      el('td',{},(q.last_seen_at||'').slice(0,16).replace('T',' ')),el('td',{},q.attempts))))
    :el('p',{class:'muted'},_('None.')));
  $('write-failures').append(WF.length?table([_('kind'),_('record'),_('field/marker'),_("CRM's reason"),_('next try')],
    WF.map(w=>el('tr',{'data-write-failure':w.entity+'/'+w.external_id},el('td',{},w.kind),
      el('td',{},w.entity+' '+w.external_id),el('td',{},w.field),el('td',{class:'neg'},w.error||''),
      el('td',{},(w.next_attempt_at||'').slice(0,16).replace('T',' ')))))
    :el('p',{class:'muted'},_('None.')));
  if(R.quarantine_total>QR.length||R.write_failures_total>WF.length)
    $('bad-records').append(el('p',{class:'muted'},_('More in the JSON report.')));}
document.body.setAttribute('data-rendered','1');
})();
