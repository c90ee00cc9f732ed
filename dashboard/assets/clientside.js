// Clientside callbacks: no server round trip for the alert pulse and the wall clock.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    sc: {
        // Toggle the active-alert halo (trace 4, see mapfig.T_HALO) between two sizes.
        pulse: function (n) {
            var gd = document.querySelector('#onemap .js-plotly-plot');
            if (!gd || !gd.data || !gd.data[4] || !window.Plotly || document.hidden) {
                return window.dash_clientside.no_update;
            }
            if (!(gd.data[4].lon || []).length) {
                return window.dash_clientside.no_update;
            }
            window.Plotly.restyle(gd, {'marker.size': (n % 2) ? 44 : 84, 'marker.opacity': (n % 2) ? 0.6 : 0.3}, [4]);
            return '';
        },
        // China time on the wall (time zone from the server: theme.page_head), and a banner when the server stopped sending fresh data.
        clock: function (n, sig, interval) {
            var now = new Date();
            var at = sig && sig.at;
            if (at !== window._scSigAt) {
                window._scSigAt = at;
                window._scSeen = now.getTime();
            }
            var stale = window._scSeen && (now.getTime() - window._scSeen > 3 * (interval || 2000) + 5000);
            var text = now.toLocaleString('zh-CN', {
                timeZone: (window.scTime || {}).timeZone, hour12: false, year: 'numeric', month: '2-digit', day: '2-digit',
                hour: '2-digit', minute: '2-digit', second: '2-digit'
            });
            return [text, stale ? 'stale' : 'stale hidden'];
        }
    }
});
