// Clientside callbacks: no server round trip for the pulse, the clock, the layer toggles, map clicks,
// the phone tabs, the wall's fly-to and the alarm tone.
(function () {
    var NO = function () { return window.dash_clientside.no_update; };

    function gd() { return document.querySelector('#onemap .js-plotly-plot'); }

    function mapOf(g) {
        var sp = g && g._fullLayout && g._fullLayout.map && g._fullLayout.map._subplot;
        return sp && sp.map;
    }

    // The map is ready for restyles once MapLibre has its style and has drawn once: touching it
    // earlier races plotly ("Cannot read properties of undefined (reading 'layers')").
    function ready(g) {
        var m = mapOf(g);
        return !!(m && m.isStyleLoaded && m.isStyleLoaded() && m.loaded());
    }

    function meta(g) { return (g && g.layout && g.layout.meta) || {}; }

    // Our own camera moves (fit, fly to an alert, zoom into a bubble) carry an `originalEvent`, so that
    // plotly records the new view as it does a person's drag: without that, its next update would put
    // the old view back, and a Plotly.relayout to tell it would re-plot the whole map (seconds in
    // software WebGL).
    var OWN_MOVE = {originalEvent: {type: 'sc-move'}};
    // How the wall goes to a new alert: close enough for its compound and the compound names, with the
    // device bubbles kept, and in one step. An animated flight repaints the map every frame (~0.1 s a
    // frame for a wall PC without a GPU) and held a click made meanwhile on the console back by 1-2 s
    // on the wall (bench/bench_dashboard.py: 2.3-2.9 s with a 1.5 s flight to zoom 16.2, 0.6-2.2 s so).
    var FLY_ZOOM = 15.4;
    var FLY_MS = 0;

    // Fit the district to the space the map really has (the server guessed a size).
    function fit(g) {
        var b = meta(g).bounds, m = mapOf(g);
        if (!b || !m || g._scFitted === g.clientWidth + 'x' + g.clientHeight) { return; }
        g._scFitted = g.clientWidth + 'x' + g.clientHeight;
        try {
            m.fitBounds([[b[0], b[1]], [b[2], b[3]]], {padding: 24, animate: false}, OWN_MOVE);
        } catch (e) { /* a map being torn down by a page change */ }
    }

    // Web Audio beep: no file to fetch; browsers allow it after one click on the page.
    var audio = {ctx: null, on: false};
    try { audio.on = window.localStorage.getItem('sc-sound') === 'on'; } catch (e) { audio.on = false; }
    function tone() {
        if (!audio.on) { return; }
        try {
            audio.ctx = audio.ctx || new (window.AudioContext || window.webkitAudioContext)();
            if (audio.ctx.state === 'suspended') { audio.ctx.resume(); }
            var t = audio.ctx.currentTime;
            [0, 0.35, 0.7].forEach(function (dt) {
                var o = audio.ctx.createOscillator(), v = audio.ctx.createGain();
                o.frequency.value = 880; o.type = 'square';
                v.gain.setValueAtTime(0.0001, t + dt);
                v.gain.exponentialRampToValueAtTime(0.25, t + dt + 0.02);
                v.gain.exponentialRampToValueAtTime(0.0001, t + dt + 0.25);
                o.connect(v); v.connect(audio.ctx.destination);
                o.start(t + dt); o.stop(t + dt + 0.3);
            });
        } catch (e) { /* no audio device */ }
    }
    function toggleSound() {
        audio.on = !audio.on;
        try { window.localStorage.setItem('sc-sound', audio.on ? 'on' : 'off'); } catch (e) { /* private mode */ }
        if (audio.on) {
            try {
                audio.ctx = audio.ctx || new (window.AudioContext || window.webkitAudioContext)();
                audio.ctx.resume();
            } catch (e) { /* none */ }
        }
    }
    function newLoud(ids, key) {
        var seen = window[key] || null, fresh = false;
        ids = ids || [];
        if (seen) { ids.forEach(function (id) { if (seen.indexOf(id) < 0) { fresh = true; } }); }
        window[key] = ids.slice();
        return fresh;
    }

    function placeHalos(g) {
        var m = mapOf(g);
        var wrap = document.getElementById('map-wrap');
        if (!m || !wrap) { return; }
        var layer = document.getElementById('halo-layer');
        if (!layer) {
            layer = document.createElement('div');
            layer.id = 'halo-layer';
            wrap.appendChild(layer);
        }
        if (m._scHaloHooked !== g) {
            m._scHaloHooked = g;
            m.on('move', function () { placeHalos(g); });
        }
        var active = ((window.scLive || {}).alerts || []).filter(function (r) { return r[3] === 1; });
        while (layer.children.length > active.length) { layer.removeChild(layer.lastChild); }
        while (layer.children.length < active.length) {
            var el = document.createElement('div');
            el.className = 'halo-ring';
            layer.appendChild(el);
        }
        var box = g.getBoundingClientRect(), wb = wrap.getBoundingClientRect();
        for (var i = 0; i < active.length; i++) {
            var p = m.project([active[i][0], active[i][1]]), el2 = layer.children[i];
            el2.style.left = (p.x + box.left - wb.left) + 'px';
            el2.style.top = (p.y + box.top - wb.top) + 'px';
            el2.style.borderColor = active[i][2];
        }
    }

    // The live layers: MapLibre sources of our own over plotly's static traces (see dashboard/mapfig.py
    // for why). Alert dots, recently resolved ones and devices in alert / offline above everything;
    // compound risk colours under the devices.
    var LIVE_TOP = ['sc-devstate', 'sc-resolved', 'sc-halo', 'sc-core', 'sc-count'];
    var LIVE_HIT = ['sc-core', 'sc-resolved', 'sc-devstate'];  // what a hover or a click finds, first wins
    function fc(features) { return {type: 'FeatureCollection', features: features}; }
    function pt(lon, lat, props) {
        return {type: 'Feature', geometry: {type: 'Point', coordinates: [lon, lat]}, properties: props};
    }
    function traceLayer(g, m, i) {  // the first MapLibre layer of plotly's trace i
        var fd = (g._fullData || [])[i], layers = m.getStyle().layers || [];
        if (!fd) { return undefined; }
        for (var k = 0; k < layers.length; k++) { if (layers[k].id.indexOf(fd.uid) >= 0) { return layers[k].id; } }
        return undefined;
    }
    function raiseLive(g, m) {
        if (!m.getLayer('sc-core')) { return; }
        var ids = (m.getStyle().layers || []).map(function (l) { return l.id; });
        if (ids.slice(-LIVE_TOP.length).join() !== LIVE_TOP.join()) {
            LIVE_TOP.forEach(function (id) { m.moveLayer(id); });
        }
        var t = meta(g).traces || {}, below = traceLayer(g, m, t.units);
        // Right under the units' first layer: above the basemap and the compounds' quiet fill, under the dots.
        if (below && ids.indexOf('sc-risk') !== ids.indexOf(below) - 1) { m.moveLayer('sc-risk', below); }
    }
    function ensureLive(g, m) {
        if (m.getSource('sc-alerts')) { return true; }
        if (!(m.isStyleLoaded && m.isStyleLoaded())) { return false; }
        ['sc-risk', 'sc-devstate', 'sc-resolved', 'sc-alerts'].forEach(function (id) {
            m.addSource(id, {type: 'geojson', data: fc([])});
        });
        var active = ['==', ['get', 'a'], 1];
        m.addLayer({id: 'sc-risk', type: 'fill', source: 'sc-risk',
                    paint: {'fill-color': ['get', 'c'], 'fill-opacity': 0.6}});
        m.addLayer({id: 'sc-devstate', type: 'circle', source: 'sc-devstate',
                    paint: {'circle-color': ['get', 'c'], 'circle-radius': 4.5, 'circle-opacity': 0.95,
                            'circle-stroke-color': '#0b1a2c', 'circle-stroke-width': 0.8}});
        m.addLayer({id: 'sc-resolved', type: 'circle', source: 'sc-resolved',
                    paint: {'circle-color': ['get', 'c'], 'circle-radius': 8, 'circle-opacity': 0.45}});
        m.addLayer({id: 'sc-halo', type: 'circle', source: 'sc-alerts', filter: active,
                    paint: {'circle-color': ['get', 'c'], 'circle-radius': 22, 'circle-opacity': 0.35}});
        // An acknowledged alert loses its white ring and shrinks: visibly not the same as an active one.
        m.addLayer({id: 'sc-core', type: 'circle', source: 'sc-alerts',
                    paint: {'circle-color': ['get', 'c'], 'circle-radius': ['case', active, 8, 5.5],
                            'circle-stroke-color': ['case', active, '#ffffff', '#55657d'],
                            'circle-stroke-width': ['case', active, 4, 3]}});
        // Several alerts at one spot: their count beside the dot (digits from the local font face).
        m.addLayer({id: 'sc-count', type: 'symbol', source: 'sc-alerts', filter: ['>', ['get', 'n'], 1],
                    layout: {'text-field': ['to-string', ['get', 'n']], 'text-size': 15, 'text-offset': [1.1, -1.1],
                             'text-allow-overlap': true, 'text-font': ['Open Sans Regular']},
                    paint: {'text-color': '#ffffff', 'text-halo-color': '#b3261e', 'text-halo-width': 2.5}});
        g._scDrawn = {};
        raiseLive(g, m);
        return true;
    }
    function compoundIndex(g) {
        var t = meta(g).traces || {}, geo = (g.data[t.compounds] || {}).geojson;
        if (!geo) { return {}; }
        if (g._scCmpGeo !== geo) {
            g._scCmpGeo = geo;
            g._scCmpIdx = {};
            (geo.features || []).forEach(function (f) { g._scCmpIdx[f.id] = f.geometry; });
        }
        return g._scCmpIdx;
    }
    function setLive(g, m, id, features) {  // only a source whose content changed is re-set
        var key = JSON.stringify(features);
        if (g._scDrawn[id] === key) { return; }
        g._scDrawn[id] = key;
        m.getSource(id).setData(fc(features));
    }
    function drawLive(g, m) {
        var data = window.scLive;
        if (!data || !m || !m.getSource('sc-alerts')) { return; }
        var kinds = window._scShownKinds || null, idx = compoundIndex(g);
        setLive(g, m, 'sc-risk', Object.keys(data.risk || {}).filter(function (c) { return idx[c]; }).map(function (c) {
            return {type: 'Feature', geometry: idx[c], properties: {c: data.risk[c]}};
        }));
        setLive(g, m, 'sc-devstate', (data.devices || []).filter(function (r) {
            return !kinds || kinds.indexOf(r[4]) >= 0;
        }).map(function (r) {
            return pt(r[0], r[1], {c: r[2], href: '/devices/' + r[3], tip: r[4] + ' ' + r[3] + '\n' + r[5] + ' · 点击查看设备'});
        }));
        setLive(g, m, 'sc-alerts', (data.alerts || []).map(function (r) {
            var more = (r[9] || []).length ? '\n此处另有:\n' + r[9].join('\n') : '';
            return pt(r[0], r[1], {c: r[2], a: r[3], n: r[8] || 1, href: '/alerts/' + r[7],
                                   tip: r[4] + ' · ' + r[5] + '\n' + r[6] + more});
        }));
        setLive(g, m, 'sc-resolved', (data.resolved || []).map(function (r) {
            return pt(r[0], r[1], {c: r[2], href: '/alerts/' + r[6], tip: r[3] + ' · 已解除\n' + r[4] + '\n' + r[5]});
        }));
        placeHalos(g);
    }
    function tipEl() {
        var el = document.getElementById('sc-tip'), wrap = document.getElementById('map-wrap');
        if (!el && wrap) {
            el = document.createElement('div');
            el.id = 'sc-tip';
            el.className = 'sc-tip';
            wrap.appendChild(el);
        }
        return el;
    }
    function liveHit(m, point) {
        var hit = m.queryRenderedFeatures(point, {layers: LIVE_HIT.filter(function (id) { return m.getLayer(id); })});
        return hit.length ? hit[0] : null;
    }
    // Hover: our own label (plotly's does not know these layers); text set as text, never as HTML.
    function hover(g, m, e) {
        var tip = tipEl(), wrap = document.getElementById('map-wrap');
        if (!tip || !wrap) { return; }
        var f = liveHit(m, e.point);
        wrap.classList.toggle('sc-tip-on', !!f);
        if (!f) { tip.style.display = 'none'; m.getCanvas().style.cursor = ''; return; }
        m.getCanvas().style.cursor = 'pointer';
        var lines = String(f.properties.tip || '').split('\n');
        tip.textContent = '';
        lines.forEach(function (line, i) {
            var el = document.createElement(i === 0 ? 'b' : 'div');
            el.textContent = line;
            tip.appendChild(el);
        });
        var box = m.getCanvas().getBoundingClientRect(), wb = wrap.getBoundingClientRect();
        tip.style.left = (e.point.x + box.left - wb.left + 14) + 'px';
        tip.style.top = (e.point.y + box.top - wb.top + 14) + 'px';
        tip.style.display = 'block';
    }
    function go(path) {
        window._scClickTaken = Date.now();  // plotly's click on what lies under it must not win
        var box = document.getElementById('_pages_content'), shown = box && box.firstElementChild;
        window._scWentTo = path;  // plotly's late click callback on the same click must not follow it
        window.dash_clientside.set_props('nav', {pathname: path});
        // Dash's page router follows at once; on a busy machine it has been seen to miss the change and
        // leave the old page under the new address: then go the plain way (a full load of that page).
        setTimeout(function () {
            if (window.location.pathname === path && box && box.firstElementChild === shown) {
                window.location.assign(path);
            }
        }, 4000);
    }

    // Device kinds shown: the registry's trace and the state trace keep only the ticked kinds. The
    // arrays the server sent are kept aside (found again by identity: a Patch or a new figure brings
    // fresh arrays, which are then the full ones), so unticking removes the devices from the cluster
    // counts too, not only from sight.
    function filterKinds(g, i, labels) {
        var tr = g.data[i];
        if (!tr) { return; }
        g._scKind = g._scKind || {};
        var mine = g._scKind[i];
        if (!mine || tr.lon !== mine.lon) {  // what the trace holds now is the server's whole list
            mine = g._scKind[i] = {full: {lon: tr.lon || [], lat: tr.lat || [], customdata: tr.customdata || [],
                                          color: tr.marker && tr.marker.color}, key: null, lon: tr.lon};
        }
        var agg = tr.meta && tr.meta.agg;  // one marker per compound: not split by kind
        var key = (labels === null || agg) ? '' : labels.join(',');
        if (mine.key === key || (mine.key === null && key === '')) { return; }
        var f = mine.full, keep = [];
        for (var j = 0; j < f.customdata.length; j++) {
            if (key === '' || labels.indexOf(f.customdata[j][1]) >= 0) { keep.push(j); }
        }
        var pick = function (a) { return keep.map(function (j) { return a[j]; }); };
        var upd = {lon: [pick(f.lon)], lat: [pick(f.lat)], customdata: [pick(f.customdata)]};
        if (Array.isArray(f.color)) { upd['marker.color'] = [pick(f.color)]; }
        window.Plotly.restyle(g, upd, [i]);
        mine.key = key;
        mine.lon = g.data[i].lon;
    }

    // Once per map: the count style of device bubbles, clicks (an alert / device dot opens its page, a
    // bubble zooms in), hover labels of the live layers, and keeping those layers on top.
    function hookMap(g, m) {
        // plotly draws the count in dark 12 px text; white with a dark halo reads on the bubble.
        (m.getStyle().layers || []).forEach(function (l) {
            if (/-cluster-count$/.test(l.id) && m.getPaintProperty(l.id, 'text-color') !== '#ffffff') {
                m.setPaintProperty(l.id, 'text-color', '#ffffff');
                m.setPaintProperty(l.id, 'text-halo-color', '#0b1a2c');
                m.setPaintProperty(l.id, 'text-halo-width', 1.2);
            }
        });
        if (m._scHooked === g) { return; }
        m._scHooked = g;
        g.on('plotly_afterplot', function () {
            raiseLive(g, m);
            // After this plot returns (a relayout inside it would nest): the panel's choice holds. While
            // MapLibre is still loading (tiles of a new view), once it is idle: a skipped turn is not retried.
            if (g._scLayersOn) { setTimeout(function () { keepLayers(g, m); }, 0); }
        });
        m.on('mousemove', function (e) { hover(g, m, e); });
        m.on('mouseout', function () { var t = tipEl(); if (t) { t.style.display = 'none'; } });
        m.on('click', function (e) {
            var took = taker(m, e.point);
            if (!took) { return; }
            window._scClickTaken = Date.now();
            if (took.href) { go(took.href); return; }
            m.easeTo({center: took.center, zoom: Math.min(m.getZoom() + 2, 18.5), duration: 400}, OWN_MOVE);
        });
        // Plotly reports the same click on what lies under it (a device of a bubble, a compound); decided
        // here, with the click, whether our layers took it, so the page callback that runs later (late by
        // seconds on a busy wall machine) knows without guessing from the clock.
        g.on('plotly_click', function (d) {
            var ev = d && d.event, box = m.getCanvas().getBoundingClientRect();
            window._scPlotlyTaken = !!(ev && ev.clientX !== undefined &&
                taker(m, [ev.clientX - box.left, ev.clientY - box.top]));
        });
    }
    // The layer panel's last choice applied to what is drawn now, or as soon as the map is idle.
    function keepLayers(g, m) {
        if (!g._scLayersOn) { return; }
        if (ready(g)) { showLayers(g, g._scLayersOn); return; }
        if (m._scKeepPending) { return; }  // one waiting turn is enough: it reads the newest choice
        m._scKeepPending = true;
        m.once('idle', function () { m._scKeepPending = false; keepLayers(g, m); });
    }
    // What a click at a point of the map does if our layers take it: a live dot opens its page, a
    // device bubble zooms in on itself; null when plotly's traces should have it.
    function taker(m, point) {
        var f = liveHit(m, point);
        if (f && f.properties.href) { return {href: f.properties.href}; }
        var ids = (m.getStyle().layers || []).map(function (l) { return l.id; })
            .filter(function (id) { return /-cluster$/.test(id); });
        if (!ids.length) { return null; }
        var hit = m.queryRenderedFeatures(point, {layers: ids});
        return hit.length ? {center: hit[0].geometry.coordinates} : null;
    }

    // Which traces and basemap layers the layer panel's choice shows. Compared with what is drawn, not
    // with the last choice: a new figure from the server comes with everything visible and untinted
    // again, and may be drawn after the panel's callback ran, so this runs again after every plot.
    function showLayers(g, on) {
        var has = function (k) { return on.indexOf(k) >= 0; };
        var only = has('alerts_only');
        var t = meta(g).traces, L = meta(g).layers || {};
        if (!t) { return; }
        var vis = {};
        vis[t.compounds] = !only && has('compounds');
        vis[t.units] = !only && has('units');
        vis[t.shops] = !only && has('shops');
        if (t.resources !== undefined) { vis[t.resources] = !only && has('resources'); }
        vis[t.devices] = !only;
        var idx = Object.keys(vis).map(Number).filter(function (i) { return g.data[i]; });
        if (idx.some(function (i) { return (g.data[i].visible !== false) !== vis[i]; })) {
            window.Plotly.restyle(g, {visible: idx.map(function (i) { return vis[i]; })}, idx);
        }
        var rel = {}, ml = (g.layout.map || {}).layers || [];
        var mm = mapOf(g);  // the street's own basemap: a layer of the style (dashboard/offline.py)
        if (mm && mm.getLayer('sc-basemap')) {
            var bm = has('basemap');
            if ((mm.getLayoutProperty('sc-basemap', 'visibility') !== 'none') !== bm) {
                mm.setLayoutProperty('sc-basemap', 'visibility', bm ? 'visible' : 'none');
            }
            // Over the basemap the community tints (the first layers, up to water) only tint it.
            var tints = meta(g).tint, tint = tints && tints[bm ? 1 : 0];
            for (var c = 0; tints && c < (L.water || 0); c++) {
                if (ml[c] && ml[c].opacity !== tint) { rel['map.layers[' + c + '].opacity'] = tint; }
            }
        }
        var bl = L.buildings !== undefined && ml[L.buildings];
        var bwant = !only && has('buildings');
        if (bl && (bl.visible !== false) !== bwant) {
            rel['map.layers[' + L.buildings + '].visible'] = bwant;
        }
        if (Object.keys(rel).length) { window.Plotly.relayout(g, rel); }
    }

    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        sc: {
            // The pulsing halo of active alerts is a CSS animation on HTML rings laid over the map:
            // restyling the map itself would repaint all of it (seconds in software WebGL) and hold up
            // every click behind it. Here the rings are only re-placed, and follow pans and zooms.
            pulse: function (n, wasReady) {
                var g = gd();
                var ok = ready(g);
                if (!ok) { return [NO(), wasReady ? false : NO()]; }
                fit(g);
                hookMap(g, mapOf(g));
                if (ensureLive(g, mapOf(g))) { drawLive(g, mapOf(g)); }
                return ['', wasReady ? NO() : true];
            },
            // New live data (a tick that changed something): into our MapLibre sources, nothing else redrawn.
            live: function (data, isReady) {
                window.scLive = data;
                var g = gd(), m = mapOf(g);
                if (!data || !isReady || !m || !ensureLive(g, m)) { return NO(); }  // map-ready calls again
                drawLive(g, m);
                return '';
            },
            clock: function () {
                return new Date().toLocaleString('zh-CN', {
                    timeZone: (window.scTime || {}).timeZone, hour12: false, year: 'numeric', month: '2-digit', day: '2-digit',
                    hour: '2-digit', minute: '2-digit', second: '2-digit'
                });
            },
            // Layer toggles: traces by visibility, basemap layers by layout, device kinds by marker size.
            layers: function (on, _fig, isReady) {
                var g = gd();
                clearTimeout(window._scLayersRetry);  // the newest choice wins over a pending retry
                if (!isReady) { return NO(); }  // map-ready turning true calls again
                if (!ready(g)) {
                    // The map is still drawing (e.g. the previous toggle): a click must not be lost,
                    // so try again shortly with the newest choice instead of dropping it.
                    var self = window.dash_clientside.sc.layers;
                    window._scLayersRetry = setTimeout(function () { self(on, _fig, isReady); }, 250);
                    return NO();
                }
                on = on || [];
                g._scLayersOn = on;
                if (!meta(g).traces) { return NO(); }
                showLayers(g, on);
                var labels = meta(g).kinds || {}, all = Object.keys(labels);
                var want = all.filter(function (k) { return on.indexOf('kind:' + k) >= 0; });
                var shown = want.length === all.length ? null : want.map(function (k) { return labels[k]; });
                filterKinds(g, meta(g).traces.devices, shown);
                window._scShownKinds = shown;
                drawLive(g, mapOf(g));
                return '';
            },
            // A click on a compound, a device or an alert opens its page.
            mapClick: function (click) {
                var g = gd();
                if (!click || !click.points || !click.points.length || !g) { return NO(); }
                if (window._scPlotlyTaken) { return NO(); }  // a live dot / bubble took this click
                if (Date.now() - (window._scClickTaken || 0) < 800) { return NO(); }  // (no DOM event known)
                // ... also when this callback runs later than that on a busy machine: the page has gone already
                if (window._scWentTo && window.location.pathname === window._scWentTo) { return NO(); }
                var p = click.points[0], t = meta(g).traces || {};
                var cd = p.customdata;
                if (p.curveNumber === t.compounds && p.location) { return '/compounds/' + p.location; }
                if (p.curveNumber === t.devices && cd) {
                    return ((p.data && p.data.meta && p.data.meta.agg) ? '/compounds/' : '/devices/') + cd[0];
                }
                return NO();
            },
            phoneTab: function (_l, _m) {
                var trig = (window.dash_clientside.callback_context.triggered[0] || {}).prop_id || '';
                var map = trig.indexOf('tab-map') === 0;
                document.getElementById('tab-map').className = 'tab' + (map ? ' on' : '');
                document.getElementById('tab-list').className = 'tab' + (map ? '' : ' on');
                if (map) {
                    setTimeout(function () { var g = gd(); if (g) { g._scFitted = null; window.Plotly.Plots.resize(g); fit(g); } }, 50);
                }
                return 'body home-body' + (map ? ' show-map' : '');
            },
            // The console: a tone when a new red/orange alert appears (after one click to allow sound).
            alarmSound: function (ids, clicks) {
                var trig = (window.dash_clientside.callback_context.triggered[0] || {}).prop_id || '';
                if (trig.indexOf('sound-btn') === 0 && clicks) { toggleSound(); }
                var btn = document.getElementById('sound-btn');
                if (btn) { btn.textContent = audio.on ? '提示音 开' : '提示音 关'; }
                if (newLoud(ids, '_scConsoleLoud')) { tone(); }
                return '';
            },
            // The wall: the newest red/orange alert takes the map (fly to it) ...
            flyTo: function (focus, isReady) {
                var g = gd(), m = mapOf(g);
                if (!focus || !isReady || !m || g._scFlown === focus.id) { return NO(); }
                g._scFlown = focus.id;
                // After the first fit to the screen has settled.
                setTimeout(function () {
                    try {
                        m.flyTo({center: [focus.lon, focus.lat], zoom: Math.max(m.getZoom(), FLY_ZOOM), duration: FLY_MS},
                                OWN_MOVE);
                    } catch (e) { /* the page changed meanwhile */ }
                }, 1200);
                return focus.id;
            },
            // ... and sounds, once per new alert, if sound was switched on by a click on the wall.
            wallSound: function (focus, clicks) {
                var trig = (window.dash_clientside.callback_context.triggered[0] || {}).prop_id || '';
                if (trig.indexOf('wall-sound') === 0 && clicks) { toggleSound(); }
                var label = audio.on ? '提示音已开启（点击关闭）' : '点击开启提示音';
                if (focus && window._scWallFocus !== focus.id) {
                    if (window._scWallFocus !== undefined) { tone(); }
                    window._scWallFocus = focus.id;
                } else if (!focus && window._scWallFocus === undefined) {
                    window._scWallFocus = null;
                }
                return ['', label];
            }
        }
    });
}());
