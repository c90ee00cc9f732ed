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

    // Fit the district to the space the map really has (the server guessed a size).
    function fit(g) {
        var b = meta(g).bounds, m = mapOf(g);
        if (!b || !m || g._scFitted === g.clientWidth + 'x' + g.clientHeight) { return; }
        g._scFitted = g.clientWidth + 'x' + g.clientHeight;
        try {
            m.fitBounds([[b[0], b[1]], [b[2], b[3]]], {padding: 24, animate: false});
            var c = m.getCenter();
            window.Plotly.relayout(g, {'map.center': {lon: c.lng, lat: c.lat}, 'map.zoom': m.getZoom()});
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
        var m = mapOf(g), t = meta(g).traces || {halo: 4};
        var wrap = document.getElementById('map-wrap');
        if (!m || !wrap || !g.data[t.halo]) { return; }
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
        var tr = g.data[t.halo], lon = tr.lon || [], lat = tr.lat || [];
        var colours = (tr.marker && tr.marker.color) || [];
        while (layer.children.length > lon.length) { layer.removeChild(layer.lastChild); }
        while (layer.children.length < lon.length) {
            var el = document.createElement('div');
            el.className = 'halo-ring';
            layer.appendChild(el);
        }
        var box = g.getBoundingClientRect(), wb = wrap.getBoundingClientRect();
        for (var i = 0; i < lon.length; i++) {
            var p = m.project([lon[i], lat[i]]), el2 = layer.children[i];
            el2.style.left = (p.x + box.left - wb.left) + 'px';
            el2.style.top = (p.y + box.top - wb.top) + 'px';
            el2.style.borderColor = Array.isArray(colours) ? colours[i] : colours;
        }
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

    // A click on a bubble of devices zooms in on it (MapLibre's cluster layer, under plotly's trace).
    function hookClusters(g, m) {
        // plotly draws the count in dark 12 px text; white with a dark halo reads on the bubble.
        (m.getStyle().layers || []).forEach(function (l) {
            if (/-cluster-count$/.test(l.id) && m.getPaintProperty(l.id, 'text-color') !== '#ffffff') {
                m.setPaintProperty(l.id, 'text-color', '#ffffff');
                m.setPaintProperty(l.id, 'text-halo-color', '#0b1a2c');
                m.setPaintProperty(l.id, 'text-halo-width', 1.2);
            }
        });
        if (m._scClusterHooked === g) { return; }
        m._scClusterHooked = g;
        m.on('click', function (e) {
            var ids = (m.getStyle().layers || []).map(function (l) { return l.id; })
                .filter(function (id) { return /-cluster$/.test(id); });
            if (!ids.length) { return; }
            var hit = m.queryRenderedFeatures(e.point, {layers: ids});
            if (!hit.length) { return; }
            m.easeTo({center: hit[0].geometry.coordinates, zoom: Math.min(m.getZoom() + 2, 18.5), duration: 400});
            m.once('moveend', function () {
                var c = m.getCenter();
                window.Plotly.relayout(g, {'map.center': {lon: c.lng, lat: c.lat}, 'map.zoom': m.getZoom()});
            });
        });
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
                hookClusters(g, mapOf(g));
                placeHalos(g);
                return ['', wasReady ? NO() : true];
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
                var has = function (k) { return on.indexOf(k) >= 0; };
                var only = has('alerts_only');
                var t = meta(g).traces, L = meta(g).layers || {};
                if (!t) { return NO(); }
                var vis = {};
                vis[t.compounds] = !only && has('compounds');
                vis[t.units] = !only && has('units');
                vis[t.shops] = !only && has('shops');
                vis[t.devices] = !only;
                var idx = Object.keys(vis).map(Number);
                // Compared with what is drawn, not with the last choice: a new figure from the server
                // comes with everything visible again.
                if (idx.some(function (i) { return (g.data[i].visible !== false) !== vis[i]; })) {
                    window.Plotly.restyle(g, {visible: idx.map(function (i) { return vis[i]; })}, idx);
                }
                var labels = meta(g).kinds || {}, all = Object.keys(labels);
                var want = all.filter(function (k) { return has('kind:' + k); });
                var shown = want.length === all.length ? null : want.map(function (k) { return labels[k]; });
                filterKinds(g, t.devices, shown);
                if (t.devstate !== undefined) { filterKinds(g, t.devstate, shown); }
                var bl = L.buildings !== undefined && ((g.layout.map || {}).layers || [])[L.buildings];
                var bwant = !only && has('buildings');
                if (bl && (bl.visible !== false) !== bwant) {
                    var rel = {};
                    rel['map.layers[' + L.buildings + '].visible'] = bwant;
                    window.Plotly.relayout(g, rel);
                }
                return '';
            },
            // A click on a compound, a device or an alert opens its page.
            mapClick: function (click) {
                var g = gd();
                if (!click || !click.points || !click.points.length || !g) { return NO(); }
                var p = click.points[0], t = meta(g).traces || {};
                var cd = p.customdata;
                if (p.curveNumber === t.compounds && p.location) { return '/compounds/' + p.location; }
                if (p.curveNumber === t.devices && cd) {
                    return ((p.data && p.data.meta && p.data.meta.agg) ? '/compounds/' : '/devices/') + cd[0];
                }
                if (p.curveNumber === t.devstate && cd) { return '/devices/' + cd[0]; }
                if ((p.curveNumber === t.core || p.curveNumber === t.resolved) && cd) { return '/alerts/' + cd[3]; }
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
                // After the first fit to the screen has settled (a relayout would cut the flight short).
                setTimeout(function () {
                    try {
                        // When the flight ends, tell plotly, or its next update would put the old view back.
                        m.once('moveend', function () {
                            var c = m.getCenter();
                            window.Plotly.relayout(g, {'map.center': {lon: c.lng, lat: c.lat}, 'map.zoom': m.getZoom()});
                        });
                        // A fixed 1.5 s flight: in software WebGL every frame holds the page ~0.1 s.
                        m.flyTo({center: [focus.lon, focus.lat], zoom: Math.max(m.getZoom(), 16.2), duration: 1500});
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
